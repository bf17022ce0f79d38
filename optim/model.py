"""``OnlineLogisticRegression``: the in-process learner, with scikit-learn conventions.

>>> import scipy.sparse as sp
>>> from optim import OnlineLogisticRegression
>>> model = OnlineLogisticRegression({"name": "adagrad", "lr": 0.5}, dim=4)
>>> X = sp.csr_array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]] * 50)
>>> model = model.partial_fit(X, [1, 0] * 50)
>>> model.predict_proba(X[:2]).round(2)
array([[0.04, 0.96],
       [0.96, 0.04]])
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from optim._loop import HELD_OUT, LEARNED, LOSS_BEYOND_LIMIT, LOSS_LIMIT, REFUSED_ROW
from optim.batch import Batch, largest_magnitude, row_containing
from optim.errors import BatchError, ConfigError, ModelFileError, NonFiniteUpdate
from optim.features import DEFAULT_MAX_NAMES, FeatureOptions
from optim.feedback import MEMBERS as FEEDBACK_MEMBERS
from optim.feedback import ROW_OVERHEAD_BYTES, Feedback, FeedbackPolicy, check_feedback_state
from optim.frequency import rates_by_frequency
from optim.hashing import FeatureHasher, coordinates_of
from optim.kernels import Kernels, kernels_for
from optim.metrics import ProgressiveMetrics, probabilities, score
from optim.model_file import (
    FORMAT,
    NORMALIZED_SLOT,
    ModelFileReader,
    check_arrays,
    check_state,
)
from optim.model_file import STATE_DTYPES as _DTYPES
from optim.optimizers import OptimizerSpec, get_optimizer

LAZY_MODES = ("exact", "frozen")
# A remembered feature name's dict entry and integer key, beside the string itself (measured).
_NAME_ENTRY_BYTES = 80
_VALUE_LIMITS = {"float64": 1e100, "float32": 1e15}
# Bytes of a large array written at a time by save_file_arrays.
_WRITE_PIECE = 1 << 20
_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
MAX_HOLDOUT_EVERY = 2**31 - 1

Rows = Sequence[Mapping[str, object]]
if TYPE_CHECKING:  # scipy is not imported for text input (adaserve train starts without it)
    import scipy.sparse as sp

    Features = Batch | sp.spmatrix | sp.sparray | Rows


@dataclass(frozen=True)
class LearnResult:
    """What learning one batch did: pre-update (progressive) predictions and their loss.

    ``margins``, ``probabilities`` and ``losses`` are of every row, held out or not; ``log_loss``
    is the weighted mean over the rows learned (nan if none), ``holdout_log_loss`` over those
    held out (nan if none)."""

    rows: int
    step: int
    margins: np.ndarray
    probabilities: np.ndarray
    losses: np.ndarray  # each row's log-loss
    log_loss: float  # their weighted mean
    # Which rows were held out and their weighted mean log-loss; None: none was. One field (a
    # row a call is ~20 µs: every field of this frozen dataclass costs).
    holdout: tuple[np.ndarray, float] | None = None

    @property
    def held_out(self) -> np.ndarray | None:
        """Which rows were held out (one bool a row); None: none was."""
        return None if self.holdout is None else self.holdout[0]

    @property
    def holdout_log_loss(self) -> float:
        """The weighted mean log-loss of the rows held out (nan if none was)."""
        return math.nan if self.holdout is None else self.holdout[1]

    @property
    def holdout_rows(self) -> int:
        return 0 if self.held_out is None else int(np.count_nonzero(self.held_out))

    @property
    def learned_rows(self) -> int:
        """Rows learned: the steps the batch took."""
        return self.rows - self.holdout_rows


@dataclass(frozen=True)
class LearnCall:
    """One call of a model's compiled ``learn`` kernel: its ``arguments`` and what
    :meth:`OnlineLogisticRegression.learn_outcomes` reads back (``margins``, ``refusals``)."""

    batches: Sequence[Batch]
    whole: Batch
    weights: np.ndarray
    margins: np.ndarray
    bounds: np.ndarray
    refusals: np.ndarray
    holdout: np.ndarray  # a row's HELD_OUT or LEARNED once the kernel has run
    arguments: tuple[Any, ...]


def save_file_arrays(file: str | os.PathLike[str] | IO[bytes], arrays: Mapping[str, Any]) -> None:
    """Write :meth:`OnlineLogisticRegression.file_arrays` as a model file: an ``.npz`` as
    ``np.savez`` writes it (an uncompressed zip of ``.npy`` members; ``np.load`` reads it).

    A large array's bytes go to the file from its own memory, a MiB at a time: ``np.savez``
    copies an array 16 MiB at a time first, holding the GIL for each copy (a server's event
    loop stood still ~10 ms each, several times a snapshot of a 2**20-coordinate model).
    """
    if isinstance(file, str | os.PathLike):
        with open(file, "wb") as f:
            save_file_arrays(f, arrays)
        return
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            array = np.asanyarray(value)
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                if array.nbytes < _WRITE_PIECE or not array.flags.c_contiguous:
                    np.lib.format.write_array(member, array, allow_pickle=False)
                    continue
                header = np.lib.format.header_data_from_array_1_0(array)
                np.lib.format.write_array_header_1_0(member, header)
                data = memoryview(array.reshape(-1).view(np.uint8))
                for start in range(0, len(data), _WRITE_PIECE):
                    member.write(data[start : start + _WRITE_PIECE])


def _resolve_optimizer(optimizer: str | Mapping[str, Any]) -> tuple[OptimizerSpec, dict[str, Any]]:
    if isinstance(optimizer, str):
        optimizer = {"name": optimizer}
    if not isinstance(optimizer, Mapping) or "name" not in optimizer:
        raise ConfigError(
            "must be a name or a mapping with a 'name' and hyperparameters", field="optimizer"
        )
    spec = get_optimizer(optimizer["name"])
    return spec, spec.resolve(optimizer)


def unsigned(positions: np.ndarray) -> np.ndarray:
    """Validated (non-negative) int64 ``indptr`` or ``indices`` as uint64, without a copy: numba
    then indexes with them without its per-access check for negative indices (wraparound)."""
    return positions.view(np.uint64)


def check_holdout_every(value: object, field: str = "holdout_every") -> int:
    """``value`` as a holdout period: 0 (none) or every how many rows one is held out."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"must be an integer, got {value!r}", field=field)
    if not 0 <= value <= MAX_HOLDOUT_EVERY:
        raise ConfigError(
            f"must be in [0, {MAX_HOLDOUT_EVERY}] (0: no row held out), got {value!r}",
            field=field,
        )
    return int(value)


class OnlineLogisticRegression:
    """Logistic regression learned online, one row at a time, by a lazy per-coordinate optimizer.

    Parameters
    ----------
    optimizer:
        A registered name (``"adagrad"``) or ``{"name": "adam", "lr": 0.01, ...}``.
    dim:
        Number of feature coordinates (or give ``hash_bits``: ``dim = 2**hash_bits``).
    lazy:
        ``"exact"`` (the dense algorithm, every absent coordinate taking zero-gradient steps) or
        ``"frozen"`` (absent coordinates keep their state, as ``torch.optim.SparseAdam``).
    fit_intercept:
        Learn an intercept (a coordinate present in every row with value 1, never regularized).
    dtype:
        ``"float64"`` or ``"float32"`` (half the memory; at most 2**32-1 steps).
    normalized:
        Normalized updates (Ross, Mineiro & Langford 2013; VW's ``--normalized``): each
        coordinate keeps the largest ``|x|`` seen (state slot ``scale``) and the optimizer runs
        in units of it, with a global rate correction (see :mod:`optim.optimizers.base`).
    invariant:
        Importance-invariant updates (Karampatziakis & Langford 2011; SGD and AdaGrad): a row
        of weight ``h`` is one closed-form step, the limit of ``h`` steps of weight ``1/n``.
    hash_seed:
        MurmurHash3 seed for rows of named features.
    recent_window:
        Rows in the recent-window progressive metrics (and holdout metrics).
    holdout_every:
        ``k`` > 0: hold out every ``k``-th row, as Vowpal Wabbit's ``--holdout_period``: the
        model's ``n``-th row (1-based, counting every row it has been given, learned or held
        out, across batches and requests since it was created) is held out when ``k`` divides
        ``n``. A held-out row is scored on the model as it stands and not learned: no step is
        taken and no state changes, so the model equals one that never saw it; its loss goes
        to :attr:`holdout_metrics` instead of :attr:`metrics`. 0 (the default): none. A batch's
        own ``holdout`` mask (a stream's ``holdout_every``) decides for its rows instead; they
        count among the ``n`` rows all the same.
    feedback:
        ``{"ttl_seconds": T, "on_expiry": "negative" | "drop"}``: rows may be predicted with an
        id and labelled later (:attr:`feedback`, see :mod:`optim.feedback`); None: they may not.
    interactions, ignore, keep:
        Crossed features of namespaces (``["ab", "abc"]``, as VW's ``-q``/``--interactions``)
        and namespaces left out or kept (VW's ``--ignore``/``--keep``), for every row read from
        text or named features (see :mod:`optim.features`).
    """

    def __init__(
        self,
        optimizer: str | Mapping[str, Any] = "adagrad",
        dim: int | None = None,
        *,
        hash_bits: int | None = None,
        lazy: str = "exact",
        fit_intercept: bool = True,
        dtype: str = "float64",
        hash_seed: int = 0,
        recent_window: int = 10_000,
        max_feature_names: int = DEFAULT_MAX_NAMES,
        normalized: bool = False,
        invariant: bool = False,
        feedback: Mapping[str, Any] | None = None,
        interactions: Sequence[str] | None = None,
        ignore: Sequence[str] | None = None,
        keep: Sequence[str] | None = None,
        holdout_every: int = 0,
    ) -> None:
        self.spec, self.optimizer_params = _resolve_optimizer(optimizer)
        self.features = FeatureOptions.of(interactions, ignore, keep)
        for name, value in (("normalized", normalized), ("invariant", invariant)):
            if not isinstance(value, bool):
                raise ConfigError(f"must be a boolean, got {value!r}", field=name)
        if invariant and self.spec.accumulate is None:
            raise ConfigError(
                f"importance-invariant updates exist for sgd and adagrad, not {self.spec.name}",
                field="invariant",
            )
        if (dim is None) == (hash_bits is None):
            raise ConfigError("give exactly one of dim and hash_bits", field="dim")
        if hash_bits is not None:
            if (
                isinstance(hash_bits, bool)
                or not isinstance(hash_bits, int)
                or not (1 <= hash_bits <= 40)
            ):
                raise ConfigError(
                    f"must be an integer in [1, 40], got {hash_bits!r}", field="hash_bits"
                )
            dim = 2**hash_bits
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
            raise ConfigError(f"must be a positive integer, got {dim!r}", field="dim")
        if lazy not in LAZY_MODES:
            raise ConfigError(f"must be one of {list(LAZY_MODES)}, got {lazy!r}", field="lazy")
        if dtype not in _DTYPES:
            raise ConfigError(f"must be one of {list(_DTYPES)}, got {dtype!r}", field="dtype")
        if not isinstance(fit_intercept, bool):
            raise ConfigError(f"must be a boolean, got {fit_intercept!r}", field="fit_intercept")
        if (
            isinstance(recent_window, bool)
            or not isinstance(recent_window, int)
            or recent_window < 1
        ):
            raise ConfigError(
                f"must be a positive integer, got {recent_window!r}", field="recent_window"
            )
        self.holdout_every = check_holdout_every(holdout_every)
        self.dim = int(dim)
        self.hash_bits = hash_bits
        self.lazy = lazy
        self.fit_intercept = fit_intercept
        self.dtype = dtype
        self.hasher = FeatureHasher(self.dim, hash_seed)
        self.max_feature_names = max_feature_names
        self.normalized, self.invariant = normalized, invariant
        self.slots = self.spec.slots + (NORMALIZED_SLOT,) * normalized
        self._kernels = kernels_for(self.spec, normalized=normalized, invariant=invariant)
        self._hp = self.spec.pack(self.optimizer_params)
        self._l2 = float(self.optimizer_params.get("l2", 0.0)) if self.spec.l2_in_gradient else 0.0
        # Catch-up is the identity for optimizers whose two modes coincide: skip its bookkeeping.
        self._exact = lazy == "exact" and not self.spec.lazy_modes_coincide
        float_type, counter_type = _DTYPES[dtype]
        initial = self.spec.initial_slot_values(self.optimizer_params)
        if max(map(abs, initial), default=0.0) > float(np.finfo(float_type).max):
            raise ConfigError(
                f"the initial state {initial} is beyond the range of {dtype}", field="optimizer"
            )
        size = self.dim + 1  # the last coordinate is the intercept
        # One record per coordinate: [weight, slot...] and [last_touched_step, times_touched].
        self.table = np.zeros((size, 1 + len(self.slots)), dtype=float_type)
        if any(initial):  # else the zeros stay untouched pages until used (or replaced)
            self.table[:, 1 : 1 + len(initial)] = initial
        # Normalized models' total row weight and weighted sum of normalized squared norms.
        self.norm_sums = np.zeros(2)
        self.counters = np.zeros((size, 2), dtype=counter_type)
        self.step = 0
        self.metrics = ProgressiveMetrics(recent_window)
        self.holdout_metrics = ProgressiveMetrics(recent_window)
        self.feature_names: dict[int, str] = {}
        self.name_collisions: set[int] = set()  # coordinates where two names were seen
        self._name_bytes = 0  # of feature_names (see memory_bytes)
        self.feedback = (
            None
            if feedback is None
            else Feedback(FeedbackPolicy.from_config(feedback), recent_window, self.dim)
        )

    # ----------------------------------------------------------------- configuration
    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild an empty model like this one (JSON-friendly)."""
        optimizer = {"name": self.spec.name}
        for name, value in self.optimizer_params.items():
            optimizer[name] = list(value) if isinstance(value, tuple) else value
        config = {
            "optimizer": optimizer,
            "dim": self.dim,
            "hash_bits": self.hash_bits,
            "lazy": self.lazy,
            "fit_intercept": self.fit_intercept,
            "dtype": self.dtype,
            "hash_seed": self.hasher.seed,
            "recent_window": self.metrics.window,
            "normalized": self.normalized,
            "invariant": self.invariant,
            **self.features.config(),
            "holdout_every": self.holdout_every,
        }
        if self.feedback is not None:
            config["feedback"] = self.feedback.policy.to_config()
        return config

    @property
    def state_bytes(self) -> int:
        """Bytes held by the per-coordinate state arrays."""
        return self.table.nbytes + self.counters.nbytes

    @property
    def memory_bytes(self) -> int:
        """Bytes the model holds or may come to hold as it learns, for memory budgets: the state,
        the optimizer's tables, the progressive metrics with a full recent window, the holdout
        metrics likewise when the model holds rows out itself (else as they are: only a stream
        of its own ``holdout_every`` fills them), the feature names remembered so far, and the
        pending rows and served metrics (feedback)."""
        metrics = ProgressiveMetrics.nbytes_for(self.metrics.window) + (
            ProgressiveMetrics.nbytes_for(self.metrics.window)
            if self.holdout_every
            else self.holdout_metrics.nbytes
        )
        pending = self.feedback.memory_bytes if self.feedback is not None else 0
        return self.state_bytes + self._hp.nbytes + metrics + self._name_bytes + pending

    @property
    def rows_seen(self) -> int:
        """Rows the model has been given: learned (its step) or held out."""
        return self.step + self.holdout_metrics.rows

    @property
    def last_touched_step(self) -> np.ndarray:
        """Raw (not caught-up) last step at which each coordinate was present; a view."""
        return self.counters[:, 0]

    @property
    def times_touched(self) -> np.ndarray:
        """How many rows each coordinate was present in; a view."""
        return self.counters[:, 1]

    @staticmethod
    def state_bytes_for(
        optimizer: str | Mapping[str, Any],
        dim: int,
        dtype: str = "float64",
        normalized: bool = False,
    ) -> int:
        """State bytes a model of this configuration will hold (for memory budgets)."""
        spec, _ = _resolve_optimizer(optimizer)
        float_type, counter_type = _DTYPES.get(dtype, _DTYPES["float64"])
        columns = 1 + len(spec.slots) + bool(normalized)
        per_coordinate = (
            columns * np.dtype(float_type).itemsize + 2 * np.dtype(counter_type).itemsize
        )
        return (dim + 1) * per_coordinate

    @staticmethod
    def memory_bytes_for(
        optimizer: str | Mapping[str, Any],
        dim: int,
        dtype: str = "float64",
        recent_window: int = 10_000,
        normalized: bool = False,
        feedback: bool = False,
        holdout_every: object = 0,
    ) -> int:
        """:attr:`memory_bytes` of a new model of this configuration (``feedback``: with a
        feedback setting, its served metrics; pending rows count as they come;
        ``holdout_every`` is validated by the constructor)."""
        spec, params = _resolve_optimizer(optimizer)
        if isinstance(recent_window, bool) or not isinstance(recent_window, int):
            raise ConfigError(f"must be an integer, got {recent_window!r}", field="recent_window")
        return (
            OnlineLogisticRegression.state_bytes_for(optimizer, dim, dtype, normalized)
            + spec.pack(params).nbytes
            + ProgressiveMetrics.nbytes_for(recent_window)
            + (Feedback.fixed_bytes(recent_window) if feedback else 0)
            + (
                ProgressiveMetrics.nbytes_for(recent_window)
                if holdout_every
                else ProgressiveMetrics().nbytes
            )
        )

    # ----------------------------------------------------------------- batches
    def to_batch(
        self,
        X: Features,
        y: object | None = None,
        sample_weight: object | None = None,
        *,
        require_labels: bool = False,
    ) -> Batch:
        """Validate ``X`` (Batch, scipy sparse, or rows of named features) into a Batch."""
        if isinstance(X, Batch):
            if X.dim != self.dim:
                raise BatchError(
                    f"was built for dim={X.dim}, the model has dim={self.dim}", field="X"
                )
            if require_labels and X.labels is None:
                raise BatchError("are required to learn", field="labels")
            return X
        scipy_sparse = sys.modules.get("scipy.sparse")  # not imported: X is no scipy matrix
        if scipy_sparse is not None and scipy_sparse.issparse(X):
            return Batch.from_scipy(
                X, y, sample_weight, dim=self.dim, require_labels=require_labels
            )
        if isinstance(X, Sequence) and not isinstance(X, str | bytes):
            return Batch.from_rows(
                X, y, sample_weight, hasher=self.hasher, require_labels=require_labels,
                features=self.features,
            )  # fmt: skip
        raise BatchError(
            f"must be a scipy.sparse matrix, a Batch or a list of rows of named features, "
            f"got {type(X).__name__}",
            field="X",
        )

    def _remember_names(self, batch: Batch) -> None:
        """The first name seen at each coordinate (up to ``max_feature_names``), and the
        coordinates where a second name was seen (a hash collision; as many at most)."""
        if not batch.feature_names:
            return
        names = self.feature_names
        for key, index in batch.feature_names.items():
            known = names.get(index)
            if known is None:
                if len(names) < self.max_feature_names:
                    names[index] = key
                    self._name_bytes += sys.getsizeof(key) + _NAME_ENTRY_BYTES
            elif (
                known != key
                and index not in self.name_collisions
                and len(self.name_collisions) < self.max_feature_names
            ):
                self.name_collisions.add(index)
                self._name_bytes += _NAME_ENTRY_BYTES

    # ----------------------------------------------------------------- learning
    def learn(
        self, X: Features, y: object | None = None, sample_weight: object | None = None
    ) -> LearnResult:
        """Learn a batch row by row; return each row's pre-update prediction and the batch loss.

        The whole batch is validated first: a rejected batch changes nothing.
        """
        batch = self.to_batch(X, y, sample_weight, require_labels=True)
        return self.learn_batch(batch)

    def check_batch(self, batch: Batch, *, pending_rows: int = 0) -> None:
        """Refuse (BatchError) a valid batch this model cannot learn, before anything changes.

        Beyond labels, dim and the float32 step limit: a value or weight so large that a squared
        gradient would overflow the state (|x| above 1e100 in float64, 1e15 in float32 state).
        ``pending_rows``: rows of earlier batches that will be learned before this one.
        """
        if batch.labels is None:
            raise BatchError("are required to learn", field="labels")
        if batch.dim != self.dim:
            raise BatchError(
                f"was built for dim={batch.dim}, the model has dim={self.dim}", field="X"
            )
        if batch.holdout is not None and (
            batch.holdout.dtype != np.bool_ or batch.holdout.shape != (batch.n_rows,)
        ):
            raise BatchError(
                f"must be one bool a row ({batch.n_rows}), got {batch.holdout.dtype} of shape "
                f"{batch.holdout.shape}",
                field="holdout",
            )
        if self.counters.dtype == np.uint32 and self.step + pending_rows + batch.n_rows >= 2**32:
            raise BatchError("a float32 model holds at most 2**32-1 steps", field="X")
        limit = _VALUE_LIMITS[self.dtype]
        for field, values in (("values", batch.values), ("weights", batch.weights)):
            if values is not None and largest_magnitude(values) > limit:
                position = int(np.flatnonzero(np.abs(values) > limit)[0])
                row = row_containing(batch.indptr, position) if field == "values" else position
                raise BatchError(
                    f"{values[position]:g} is beyond ±{limit:g}: squared gradients would "
                    f"overflow this {self.dtype} model's state",
                    row=row,
                    field=field,
                )

    def learn_batch(self, batch: Batch) -> LearnResult:
        """Learn an already validated batch (see :meth:`learn`); :meth:`check_batch` first.

        Raises :class:`~optim.errors.NonFiniteUpdate` (the model unchanged) for a batch a row
        of which would make the state or the progressive metrics non-finite."""
        outcome = self.learn_batches([batch])[0]
        if isinstance(outcome, NonFiniteUpdate):
            raise outcome
        return outcome

    def learn_batches(
        self, batches: Sequence[Batch], *, check: bool = True
    ) -> list[LearnResult | NonFiniteUpdate]:
        """Learn validated batches in order: bit for bit :meth:`learn_batch` on each in turn,
        with one call of the compiled loop for all of them (a server's writer thread, which
        lets the GIL go for that call, then waits once to get it back, not once a batch).

        Each batch's outcome: its :class:`LearnResult`, or the :class:`NonFiniteUpdate` that
        refused it whole when learning a row of it would make a weight, a state slot, the
        intercept or the progressive metrics non-finite. A refused batch changes nothing (every
        coordinate it wrote is restored, bit for bit); the batches after it are learned from
        the state before it, as if it had never come.

        ``check=False`` when each batch has passed :meth:`check_batch` already, given the rows
        of the batches before it (``pending_rows``): the group is not checked again.
        """
        if not batches:
            return []
        call = self.learn_call(batches, check=check)
        self._kernels.learn(*call.arguments)
        return self.learn_outcomes(call)

    def learn_call(
        self, batches: Sequence[Batch], *, check: bool = True, whole: Batch | None = None
    ) -> LearnCall:
        """The arguments of the compiled ``learn`` kernel for ``batches`` (non-empty), which
        :meth:`learn_outcomes` turns into their outcomes once the kernel has run: the two
        halves of :meth:`learn_batches`, for a driver that runs several models' kernels in one
        compiled call (:mod:`optim.portfolio`). ``whole``: the batches joined, if at hand."""
        if whole is None:
            whole = batches[0] if len(batches) == 1 else Batch.concatenated(batches)
        if check:
            self.check_batch(whole)
        n = whole.n_rows
        weights = np.ones(n) if whole.weights is None else whole.weights
        margins = np.empty(n)
        bounds = np.cumsum([0, *(batch.n_rows for batch in batches)], dtype=np.int64)
        refusals = np.full((len(batches), 4), -1, dtype=np.int64)
        saved_state, saved_where = self._pre_images(batches)
        holdout = np.zeros(n, dtype=np.uint8)  # BY_MODEL
        for k, batch in enumerate(batches):
            if batch.holdout is not None:
                holdout[bounds[k] : bounds[k + 1]] = np.where(batch.holdout, HELD_OUT, LEARNED)
        seen = self.rows_seen if self.holdout_every else 0  # (read only then: a µs a call)
        arguments = (
            self.table, self.counters, self._hp, self._l2, self.step, self._exact,
            self.fit_intercept, unsigned(whole.indptr), unsigned(whole.indices), whole.values,
            whole.labels, weights, bounds, holdout, self.holdout_every, seen, margins, refusals,
            saved_state, saved_where, self.norm_sums,
        )  # fmt: skip
        return LearnCall(batches, whole, weights, margins, bounds, refusals, holdout, arguments)

    def learn_outcomes(self, call: LearnCall) -> list[LearnResult | NonFiniteUpdate]:
        """Each batch's outcome once the kernel has run ``call`` (see :meth:`learn_call`)."""
        batches, whole, weights = call.batches, call.whole, call.weights
        margins, bounds, refusals = call.margins, call.bounds, call.refusals
        held = call.holdout == HELD_OUT
        if not held.any():
            held = None
        refused_rows = refusals[:, REFUSED_ROW].tolist()
        if max(refused_rows) < 0:
            return self._learned(batches, whole, margins, bounds, held)
        refused = {
            k: self._refusal(refusals[k], margins, weights, int(bounds[k]))
            for k, row in enumerate(refused_rows)
            if row >= 0
        }
        kept = [k for k in range(len(batches)) if k not in refused]
        learned = iter(self._learned_rows_of(batches, kept, margins, bounds, held) if kept else ())
        return [refused[k] if k in refused else next(learned) for k in range(len(batches))]

    def _learned_rows_of(
        self,
        batches: Sequence[Batch],
        kept: list[int],
        margins: np.ndarray,
        bounds: np.ndarray,
        held: np.ndarray | None,
    ) -> list[LearnResult]:
        """:meth:`_learned` of the batches ``kept`` (indices into ``batches``) of a group."""
        rows = np.concatenate([np.arange(bounds[k], bounds[k + 1]) for k in kept])
        chosen = [batches[k] for k in kept]
        whole = chosen[0] if len(chosen) == 1 else Batch.concatenated(chosen)
        chosen_bounds = np.cumsum([0, *(batch.n_rows for batch in chosen)], dtype=np.int64)
        return self._learned(
            chosen, whole, margins[rows], chosen_bounds, None if held is None else held[rows]
        )

    def _pre_images(self, batches: Sequence[Batch]) -> tuple[np.ndarray, np.ndarray]:
        """Room for the learn kernel to save what one batch writes, as it was before: each
        coordinate once (at most ``dim``), the first row's again when caught up, the intercept
        and one spare (the kernel writes a slot before it knows whether it keeps it)."""
        room = 2 + max(
            min(batch.nnz, self.dim) + (int(batch.indptr[1]) if batch.n_rows else 0)
            for batch in batches
        )
        return (
            np.empty((room, self.table.shape[1]), dtype=self.table.dtype),
            np.empty((room, 3), dtype=np.int64),  # coordinate, last touched, times touched
        )

    def _learned(
        self,
        batches: Sequence[Batch],
        whole: Batch,
        margins: np.ndarray,
        bounds: np.ndarray,
        held: np.ndarray | None,
    ) -> list[LearnResult]:
        """Account for the learned ``batches`` (``whole``, their rows' ``margins``, which of
        them were ``held`` out; None: none was, the usual case, kept lean: learning a row a call
        takes ~20 µs in all, a few of which are here)."""
        probs, losses = score(margins, whole.labels)
        if held is None or not held.any():
            steps, holdout_means = bounds, None
            means = self.metrics.update(losses, probs, whole.labels, whole.weights, bounds)
        else:
            steps = np.concatenate([[0], np.cumsum(~held)])[bounds]
            means = self._update_rows(self.metrics, ~held, losses, probs, whole, bounds)
            holdout_means = self._update_rows(
                self.holdout_metrics, held, losses, probs, whole, bounds
            )
        step_before, self.step = self.step, self.step + int(steps[-1])
        results = []
        for k, batch in enumerate(batches):
            self._remember_names(batch)
            rows = slice(int(bounds[k]), int(bounds[k + 1]))
            step = step_before + int(steps[k + 1])
            result = LearnResult(
                rows.stop - rows.start, step, margins[rows], probs[rows], losses[rows],
                float(means[k]),
            )  # fmt: skip
            if holdout_means is not None and steps[k + 1] - steps[k] < result.rows:
                holdout = (held[rows], float(holdout_means[k]))
                result = dataclasses.replace(result, holdout=holdout)
            results.append(result)
        return results

    @staticmethod
    def _update_rows(
        metrics: ProgressiveMetrics,
        chosen: np.ndarray,
        losses: np.ndarray,
        probs: np.ndarray,
        whole: Batch,
        bounds: np.ndarray,
    ) -> np.ndarray:
        """``metrics.update`` with the ``chosen`` rows of ``whole``; each batch's mean loss."""
        assert whole.labels is not None  # learned batches are labelled
        weights = None if whole.weights is None else whole.weights[chosen]
        counts = np.concatenate([[0], np.cumsum(chosen)])[bounds]
        return metrics.update(
            losses[chosen], probs[chosen], whole.labels[chosen], weights, counts.astype(np.int64)
        )

    def _refusal(
        self, refusal: np.ndarray, margins: np.ndarray, weights: np.ndarray, first_row: int
    ) -> NonFiniteUpdate:
        """The error of a batch refused by the learn kernel (its row of ``out_refusals``)."""
        row, reason, coordinate, slot = (int(v) for v in refusal)
        if reason == LOSS_BEYOND_LIMIT:
            margin, weight = margins[first_row + row], weights[first_row + row]
            return NonFiniteUpdate(
                f"its margin {margin:g} with its weight {weight:g} is beyond what the "
                f"progressive log-loss can sum: (|margin| + 1) * weight must be at most "
                f"{LOSS_LIMIT:g}",
                row=row,
            )
        state = "weight" if slot == 0 else self.slots[slot - 1]
        owner = "the intercept" if coordinate == self.dim else f"coordinate {coordinate}"
        settings = ", ".join(f"{k}={v}" for k, v in self.config["optimizer"].items())
        return NonFiniteUpdate(
            f"learning it would make {owner}'s {state} non-finite (optimizer {settings})",
            row=row,
            coordinate=coordinate,
            state=state,
        )

    def partial_fit(
        self, X: Features, y: object, sample_weight: object | None = None
    ) -> OnlineLogisticRegression:
        """scikit-learn style: learn one batch, return ``self``."""
        self.learn(X, y, sample_weight)
        return self

    # ----------------------------------------------------------------- prediction
    def decision_function(self, X: Features) -> np.ndarray:
        """Margins ``w.x + b`` on caught-up weights. Never changes the model."""
        batch = self.to_batch(X)
        out = np.empty(batch.n_rows)
        self._kernels.margins(
            self.table, self.counters, self._hp, self.step, self._exact, self.fit_intercept,
            unsigned(batch.indptr), unsigned(batch.indices), batch.values, out,
        )  # fmt: skip
        return out

    def compiled_scoring(self) -> tuple[Kernels, tuple[Any, ...]]:
        """This model's compiled kernels and the arguments their scoring loops (``margins``,
        ``scores_of_json``) take first: state arrays, hyper-parameters, step, lazy mode and
        intercept. For compiled paths composed outside the learner (predict's fused JSON reader,
        :func:`optim.formats.json_csr.scores_of_json`); a scoring loop never writes them."""
        state = (self.table, self.counters, self._hp, self.step, self._exact, self.fit_intercept)
        return self._kernels, state

    def predict_proba(self, X: Features) -> np.ndarray:
        """``[[P(y=0), P(y=1)], ...]``, as scikit-learn classifiers return."""
        p = probabilities(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Features) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int64)

    classes_ = np.array([0, 1])

    # ----------------------------------------------------------------- inspection
    def _inspect_arrays(self, coordinates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = coordinates.shape[0]
        weight = np.empty(n)
        slots = np.empty((n, len(self.slots)))
        rate = np.empty(n)
        self._kernels.inspect(
            self.table, self.counters, self._hp, self.step, self._exact, coordinates,
            weight, slots, rate, self.norm_sums,
        )  # fmt: skip
        if not self.fit_intercept:
            # Without an intercept its row is not part of the model: report it as it lies.
            absent = coordinates == self.dim
            weight[absent] = self.table[self.dim, 0]
            slots[absent] = self.table[self.dim, 1:]
        return weight, slots, rate

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Caught-up float64 copies of every coordinate's state (intercept last).

        Keys: ``weight``, ``effective_learning_rate``, one per state slot, ``times_touched`` and
        ``last_touched_step``.
        """
        weight, slots, rate = self._inspect_arrays(np.arange(self.dim + 1, dtype=np.int64))
        out = {"weight": weight, "effective_learning_rate": rate}
        out.update({name: slots[:, i].copy() for i, name in enumerate(self.slots)})
        out["times_touched"] = self.times_touched.astype(np.int64)
        out["last_touched_step"] = self.last_touched_step.astype(np.int64)
        return out

    @property
    def coef_(self) -> np.ndarray:
        """Caught-up weights, shape ``(1, dim)`` as in scikit-learn."""
        return self.state_arrays()["weight"][None, : self.dim]

    @property
    def intercept_(self) -> np.ndarray:
        return np.array([self.inspect_coordinates([self.dim])[0]["weight"]])

    def feature_index(self, name: str) -> int:
        """The coordinate of a feature key (``"IQ"``, ``"city=paris"``, VW's ``"ns^f"``, ``"3133"``
        or a cross ``"a^x*b^y"``): where that name was seen, else where the hashing rules put it
        (:func:`optim.hashing.coordinates_of`)."""
        if not isinstance(name, str) or not name:
            raise BatchError(f"must be a non-empty string, got {name!r}", field="features")
        candidates = coordinates_of(name, self.hasher)
        for index in candidates:
            if self.feature_names.get(index) == name:
                return index
        for index in candidates:
            if self.times_touched[index]:
                return index
        return candidates[0]

    def inspect_coordinates(
        self, indices: Sequence[int] = (), features: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Weight, effective rate, state slots, times touched and last touched step, caught up.

        Coordinates by ``indices`` and/or by feature key through the model's hashing; index
        ``dim`` is the intercept.
        """
        keyed: list[tuple[int, str | None, bool]] = []
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i <= self.dim:
                raise BatchError(
                    f"index {i!r} is outside [0, {self.dim}] ({self.dim} is the intercept)",
                    field="indices",
                )
            keyed.append((int(i), self.feature_names.get(int(i)), False))
        keyed.extend((self.feature_index(name), name, True) for name in features)
        coordinates = np.array([k for k, _, _ in keyed], dtype=np.int64)
        weight, slots, rate = self._inspect_arrays(coordinates)
        out = []
        for i, (index, name, by_name) in enumerate(keyed):
            touched = int(self.times_touched[index])
            entry: dict[str, Any] = {
                "index": index,
                "feature": "(intercept)" if index == self.dim else name,
                "seen": bool(touched),
                "weight": float(weight[i]),
                "effective_learning_rate": float(rate[i]),
                "state": {s: float(slots[i, q]) for q, s in enumerate(self.slots)},
                "times_touched": touched,
                "last_touched_step": int(self.last_touched_step[index]),
            }
            recorded = self.feature_names.get(index)
            if by_name and recorded is not None and recorded != name:
                # another name's coordinate: this one was seen there only if two names were
                entry["shared_with"] = recorded
                entry["seen"] = entry["seen"] and index in self.name_collisions
            if by_name and not entry["seen"]:  # no numbers of a feature never seen (nor of
                # another one's): by index, they are the coordinate's own (initial) state
                entry.update(weight=None, effective_learning_rate=None, state=None)
            out.append(entry)
        return out

    def rate_summary(self, top: int = 20, bins: int = 20, min_touches: int = 10) -> dict[str, Any]:
        """Quantiles, histograms and top-k of effective rates and weights, touched coordinates.

        The top by effective rate leaves out coordinates touched fewer than ``min_touches``
        times: otherwise it lists only features seen once, whose rates have not moved yet.
        """
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 10_000:
            raise BatchError(f"must be an integer in [0, 10000], got {top!r}", field="top")
        if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= 1_000:
            raise BatchError(f"must be an integer in [1, 1000], got {bins!r}", field="bins")
        if isinstance(min_touches, bool) or not isinstance(min_touches, int) or min_touches < 1:
            raise BatchError(
                f"must be a positive integer, got {min_touches!r}", field="min_touches"
            )
        touched = np.flatnonzero(self.times_touched[: self.dim]).astype(np.int64)
        weight, _, rate = self._inspect_arrays(touched)

        def describe(values: np.ndarray, log_scale: bool) -> dict[str, Any]:
            if values.size == 0:
                return {"quantiles": {}, "histogram": {"edges": [], "counts": []}}
            positive = values[values > 0] if log_scale else values
            if log_scale and positive.size:
                lo, hi = np.log10(positive.min()), np.log10(positive.max())
                edges = 10.0 ** np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
            else:
                lo, hi = float(values.min()), float(values.max())
                edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
            counts, edges = np.histogram(positive if log_scale else values, bins=edges)
            return {
                "quantiles": {
                    f"{q:g}": float(v)
                    for q, v in zip(_QUANTILES, np.quantile(values, _QUANTILES), strict=True)
                },
                "histogram": {
                    "edges": edges.tolist(),
                    "counts": counts.tolist(),
                    "log10": log_scale,
                },
            }

        def top_by(key: np.ndarray, eligible: np.ndarray | None = None) -> list[dict[str, Any]]:
            order = np.argsort(-key, kind="stable")
            if eligible is not None:
                order = order[eligible[order]]
            order = order[:top]
            return [
                {
                    "index": int(touched[i]),
                    "feature": self.feature_names.get(int(touched[i])),
                    "weight": float(weight[i]),
                    "effective_learning_rate": float(rate[i]),
                    "times_touched": int(self.times_touched[touched[i]]),
                }
                for i in order
            ]

        return {
            "touched": int(touched.size),
            "step": self.step,
            "effective_learning_rate": describe(rate, log_scale=True),
            "weight": describe(weight, log_scale=False),
            "top_by_abs_weight": top_by(np.abs(weight)),
            "min_touches": min_touches,
            "top_by_effective_learning_rate": top_by(
                rate, self.times_touched[touched] >= min_touches
            ),
            # coordinates with a remembered name, and those where a second name was seen
            "names": {"remembered": len(self.feature_names), "collided": len(self.name_collisions)},
        }

    def rates_by_frequency(self, sample: int = 2_000, seed: int = 0) -> dict[str, Any]:
        """Effective rate against times touched on a seeded sample of at most ``sample`` touched
        coordinates, stratified by frequency, with the median rate per log2 bin of times touched
        (see :mod:`optim.frequency`)."""

        def inspect(coordinates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            weight, _, rate = self._inspect_arrays(coordinates)
            return weight, rate

        out = rates_by_frequency(
            self.times_touched[: self.dim], inspect, sample=sample, seed=seed,
            feature_names=self.feature_names,
        )  # fmt: skip
        return {"step": self.step, **out}

    # ----------------------------------------------------------------- persistence
    def save(self, file: str | os.PathLike[str] | IO[bytes]) -> None:
        """Write the whole model (config, raw lazy state, counters, metrics) as one ``.npz``.

        The raw state with its last-touched steps is the complete model: loading it continues
        training bit for bit. No pickle is involved.
        """
        save_file_arrays(file, self.file_arrays())

    def file_arrays(self, *, copy: bool = False) -> dict[str, np.ndarray]:
        """The arrays :meth:`save` writes; ``copy=True``: copies of the state, a picture of the
        model as it is now that :func:`save_file_arrays` can write while it learns on."""
        names = sorted(self.feature_names.items())
        config = {**self.config, "max_feature_names": self.max_feature_names}
        return {
            "format": np.array(FORMAT),
            "config": np.array(json.dumps(config)),
            "step": np.array(self.step, dtype=np.int64),
            "table": self.table.copy() if copy else self.table,
            "counters": self.counters.copy() if copy else self.counters,
            "feature_name_indices": np.array([i for i, _ in names], dtype=np.int64),
            "feature_name_keys": np.array([k for _, k in names], dtype=str),
            **self.holdout_metrics.state("holdout"),  # copies
            **self.metrics.state(),  # copies
            **({"norm_sums": self.norm_sums.copy()} if self.normalized else {}),
            **(self.feedback.state() if self.feedback is not None else {}),  # copies
        }

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        self.save(buffer)
        return buffer.getvalue()

    @classmethod
    def load(
        cls,
        file: str | os.PathLike[str] | IO[bytes],
        *,
        reserve: Callable[[int], object] | None = None,
    ) -> OnlineLogisticRegression:
        """Read a model file without trusting it (see :mod:`optim.model_file`): every member's
        name, size, dtype and shape is checked against the file's configuration before anything
        is allocated, then the state's invariants (:meth:`from_arrays`).

        ``reserve``: called with the bytes the model will hold (:attr:`memory_bytes`, plus the
        feature names as the file declares them) once the headers are checked and before any
        array is read; a server's memory budget raises there to refuse the file.
        Raises :class:`~optim.errors.ModelFileError` (a ConfigError) naming the member and why.
        """
        with ModelFileReader(file) as reader:
            if reserve is not None:
                layout = reader.layout
                reserve(
                    cls.memory_bytes_for(
                        layout.config["optimizer"],
                        layout.dim,
                        layout.dtype,
                        layout.recent_window,
                        layout.normalized,
                        layout.feedback is not None,
                        layout.config.get("holdout_every", 0),
                    )
                    + reader.member_bytes("feature_name_keys")
                    + sum(map(reader.member_bytes, FEEDBACK_MEMBERS))
                    # a pending row's overhead, per id (8 bytes of its time)
                    + ROW_OVERHEAD_BYTES * (reader.member_bytes("feedback_times") // 8)
                )
            arrays = reader.arrays()
        return cls.from_arrays(arrays, copy=False)

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], *, copy: bool = True
    ) -> OnlineLogisticRegression:
        """The model :meth:`file_arrays` describes, every array validated first (names, dtypes
        and shapes against the configuration, then the state's invariants); ``copy=False``:
        the model takes the state arrays over instead of copying them."""
        layout = check_arrays(arrays)
        config = dict(layout.config)
        try:
            model = cls(config.pop("optimizer", None), config.pop("dim", None), **config)
        except (ConfigError, TypeError) as exc:
            raise ModelFileError(f"has a bad setting: {exc}", member="config") from None
        model._restore(arrays, copy=copy)
        return model

    def _restore(self, arrays: Mapping[str, np.ndarray], *, copy: bool) -> None:
        """Take over validated arrays (see :meth:`from_arrays`) after checking the invariants
        every state this library writes keeps."""
        check_state(self.spec, arrays, normalized=self.normalized)
        # The compiled loop takes C-ordered state; copy=False: the arrays are the model's now.
        self.table = np.array(arrays["table"], order="C", copy=True if copy else None)
        self.counters = np.array(arrays["counters"], order="C", copy=True if copy else None)
        self.step = int(arrays["step"])
        if self.normalized:
            self.norm_sums = np.array(arrays["norm_sums"], dtype=np.float64)
        self.metrics = ProgressiveMetrics.from_state(dict(arrays), self.metrics.window)
        if "holdout_rows" in arrays:  # else written before holdout metrics: none held out
            self.holdout_metrics = ProgressiveMetrics.from_state(
                dict(arrays), self.metrics.window, "holdout"
            )
        indices, keys = arrays["feature_name_indices"], arrays["feature_name_keys"]
        self.feature_names = dict(zip(indices.tolist(), keys.tolist(), strict=True))
        self._name_bytes = sum(map(sys.getsizeof, self.feature_names.values())) + (
            _NAME_ENTRY_BYTES * len(self.feature_names)
        )
        if self.feedback is not None:
            check_feedback_state(arrays, self.dim, self.metrics.window)
            self.feedback = Feedback.from_state(
                self.feedback.policy, self.metrics.window, self.dim, arrays
            )

    def __repr__(self) -> str:
        return (
            f"OnlineLogisticRegression(optimizer={self.config['optimizer']!r}, dim={self.dim}, "
            f"lazy={self.lazy!r}, step={self.step})"
        )
