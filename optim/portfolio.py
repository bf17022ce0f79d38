"""``"optimizer": "auto"``: a small portfolio of configurations learned side by side, predicting
with a mixture of them that cannot do much worse than the best, so nobody has to tune a
learning rate.

Members
-------
:data:`MEMBERS` is the portfolio, as data: each member a name and the settings of an
:class:`~optim.model.OnlineLogisticRegression` (``optimizer`` plus any per-model option such as
``normalized``); the portfolio's own ``dim``, ``lazy``, ``fit_intercept``, ``dtype`` and
``hash_seed`` are shared by every member. Today (chosen on the data sets of
``loadtest/REPORT_QUALITY.md``): ``vw`` first, VW's own default (AdaGrad lr 0.5, normalized and
importance-invariant), so the mixture starts near VW; the same update at lr 0.1 and 2; plain
AdaGrad lr 0.1, best where features are already on one scale (TF-IDF, one-hot); and normalized
FTRL-Proximal at alpha 1.

Learning
--------
Every member learns every row. One call of a compiled driver (generated once per list of
member optimizers, like the per-optimizer loops of :mod:`optim.kernels`) runs each member's own
compiled ``learn`` kernel over the batches in turn, so a member's state is bit for bit what a
model of that configuration alone would hold after the same rows: the portfolio reuses the
optimizers' kernels, it does not copy them. A batch a member refuses (a row that would make its
state non-finite) retires that member, its state as the refusal left it: it learns nothing more
and has no say in predictions. A batch every active member refuses is refused by the portfolio
(nothing changes, as for a single model).

Predicting: a mixture
---------------------
Row ``i`` is predicted from rows ``0..i-1`` only, with member ``k``'s probability ``p_k``:

* the *combination* ``q = sum_k c_k p_k`` with shares ``c`` (start: :data:`FIRST_SHARE` on the
  first member, the rest equal), updated after each row of label ``y`` and weight ``h`` by
  exponentiated gradient on its log-loss (Helmbold, Schapire, Singer & Warmuth 1998, "On-line
  portfolio selection using multiplicative updates"): ``c_k <- c_k * exp(MIXING_RATE * h * g_k)``
  renormalized, ``g_k = y p_k / q + (1 - y)(1 - p_k) / (1 - q)``. It tracks the best *mix* of
  members, which can beat every member (diverse members err differently);
* the *prediction* ``p = sum_j a_j p_j / sum_j a_j`` over the members and the combination (the
  Aggregating Algorithm for log-loss, i.e. the Bayes mixture; Vovk 1990): ``a_j = prior_j *
  exp(-L_j)``, ``L_j`` expert ``j``'s weighted cumulative log-loss, the prior
  :data:`COMBINATION_PRIOR` on the combination and the rest shared by the members. Hence, for
  rows of weight at most 1, its cumulative log-loss is at most every member's plus ``ln(K /
  (1 - COMBINATION_PRIOR))`` and the combination's plus ``ln(1 / COMBINATION_PRIOR)``: a few
  nats over the whole stream, whatever the data.

Held-out rows (``holdout_every``, shared by every member, or a batch's own ``holdout`` mask)
are scored by every member as it stands and by the mixture, and learned by none: no member
takes a step and the mixture's weights and combination do not move, so the portfolio equals
one never given them. The mixture's loss on them goes to :attr:`holdout_metrics` (each
member's to its own).

With ``feedback`` the portfolio keeps one :class:`~optim.feedback.Feedback` table of its own:
rows predicted with an id are served the mixture's margin, and a label (or an expiry) learns
the row as any update does, by every member and the mixture.

The margin reported is ``log p - log(1 - p)``, computed in logs. The *leader*, shown by the
leaderboard and read by inspection (rates, coordinates), is the active member of highest weight
``a_k``; each member's recent loss (its weighted progressive log-loss discounted by
``exp(-1/window)`` a row) is shown beside it.

Cost: ``K`` members hold ``K`` models' state and take ``K`` models' learning time, plus a
per-row pass over ``K`` probabilities to mix them; a prediction scores every active member (``K``
times a single model's), inspection reads one member.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import math
import os
import sys
import threading
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import numba as nb
import numpy as np

from optim._cache import CACHE_KEY, COMPILED_DIRECTORY
from optim._loop import HELD_OUT
from optim.batch import Batch
from optim.errors import ConfigError, ModelFileError, NonFiniteUpdate
from optim.feedback import MEMBERS as FEEDBACK_MEMBERS
from optim.feedback import ROW_OVERHEAD_BYTES, Feedback, FeedbackPolicy, check_feedback_state
from optim.hashing import FeatureHasher
from optim.metrics import ProgressiveMetrics, probabilities, score
from optim.model import (
    LearnCall,
    LearnResult,
    OnlineLogisticRegression,
    save_file_arrays,
)
from optim.model_file import check_member, check_metrics_arrays, feedback_rules, json_depth
from optim.optimizers import OptimizerSpec

if TYPE_CHECKING:
    from optim.features import FeatureOptions
    from optim.model import Features


@dataclass(frozen=True)
class Member:
    """One configuration of the portfolio: its name and its model settings."""

    name: str
    settings: Mapping[str, Any]


_VW = {"normalized": True, "invariant": True}
MEMBERS: tuple[Member, ...] = (
    Member("vw", {"optimizer": {"name": "adagrad", "lr": 0.5}, **_VW}),
    Member("vw-lr0.1", {"optimizer": {"name": "adagrad", "lr": 0.1}, **_VW}),
    Member("vw-lr2", {"optimizer": {"name": "adagrad", "lr": 2.0}, **_VW}),
    Member("adagrad-0.1", {"optimizer": {"name": "adagrad", "lr": 0.1}}),
    Member("ftrl-normalized", {"optimizer": {"name": "ftrl", "alpha": 1.0}, "normalized": True}),
)
DEFAULT_WINDOW = 2_000
# The mixture (module docstring): the combination's learning rate, the share of the first
# member in the combination's start, and the combination's prior weight in the mixture.
MIXING_RATE = 0.1
FIRST_SHARE = 0.8
COMBINATION_PRIOR = 0.9
MAX_MEMBERS = 16
AUTO = "auto"
FORMAT = "adaserve-portfolio-v2"
FORMAT_V1 = "adaserve-portfolio-v1"  # the leader predicted alone; read, the mixture starts afresh
_STATE_BYTES = 1 << 20  # the portfolio.npy member (JSON: settings, leader, retired members)
_SHARED = (
    "dim", "hash_bits", "lazy", "fit_intercept", "dtype", "hash_seed", "max_feature_names",
    "interactions", "ignore", "keep", "holdout_every",
)  # fmt: skip
# Model options a portfolio does not take as a whole: the update form is each member's own.
# Given at their defaults (as a configuration spelled out in full has them) they are ignored.
_NOT_SHARED = {"normalized": False, "invariant": False}


def is_auto(optimizer: object) -> bool:
    """Whether an optimizer setting asks for the portfolio (``"auto"`` or ``{"name": "auto"}``)."""
    name = optimizer.get("name") if isinstance(optimizer, Mapping) else optimizer
    return isinstance(name, str) and name.lower() == AUTO


def members_of(optimizer: Mapping[str, Any]) -> tuple[Member, ...]:
    """The members an ``{"name": "auto", "members": [{"name": ..., "optimizer": ...,
    <model options>}, ...]}`` setting lists (:data:`MEMBERS` without ``members``)."""
    listed = optimizer.get("members")
    if listed is None:
        return MEMBERS
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_MEMBERS:
        raise ConfigError(
            f"must be a list of 1 to {MAX_MEMBERS} members, got {listed!r:.200}",
            field="optimizer.members",
        )
    members = []
    for k, entry in enumerate(listed):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConfigError(
                "must be an object with a string 'name' and model settings",
                field=f"optimizer.members[{k}]",
            )
        members.append(Member(entry["name"], {n: v for n, v in entry.items() if n != "name"}))
    return tuple(members)


def new_model(
    optimizer: str | Mapping[str, Any] = "adagrad", dim: int | None = None, **settings: Any
) -> OnlineLogisticRegression | PortfolioLogisticRegression:
    """The model a configuration describes: the portfolio for ``"optimizer": "auto"`` (see
    :meth:`PortfolioLogisticRegression.from_config`), else an OnlineLogisticRegression."""
    if is_auto(optimizer):
        return PortfolioLogisticRegression.from_config(optimizer, dim=dim, **settings)
    return OnlineLogisticRegression(optimizer, dim, **settings)


def memory_bytes_for(
    optimizer: str | Mapping[str, Any], dim: int, dtype: str = "float64",
    recent_window: int = 10_000, normalized: bool = False, feedback: bool = False,
    holdout_every: object = 0,
) -> int:  # fmt: skip
    """:attr:`memory_bytes` of a new model of this configuration, portfolio or not."""
    if not is_auto(optimizer):
        return OnlineLogisticRegression.memory_bytes_for(
            optimizer, dim, dtype, recent_window, normalized, feedback, holdout_every
        )
    members = members_of(optimizer if isinstance(optimizer, Mapping) else {})
    metrics = ProgressiveMetrics.nbytes_for(recent_window)
    return (
        sum(
            OnlineLogisticRegression.memory_bytes_for(
                m.settings.get("optimizer", "adagrad"),
                dim,
                dtype,
                recent_window,
                m.settings.get("normalized", False) is True,
                holdout_every=holdout_every,
            )
            for m in members
        )
        + metrics
        + (metrics if holdout_every else ProgressiveMetrics().nbytes)  # the mixture's holdout
        + (Feedback.fixed_bytes(recent_window) if feedback else 0)
        + 3 * 8 * (len(members) + 1)
    )  # recent losses, the mixture's weights and combination


def optimizers_in(model: OnlineLogisticRegression | PortfolioLogisticRegression) -> list[str]:
    """The optimizers whose compiled loops a model runs (a portfolio's members')."""
    if isinstance(model, PortfolioLogisticRegression):
        return list(dict.fromkeys(m.spec.name for m in model.members.values()))
    return [model.spec.name]


def load_model(
    file: str | os.PathLike[str] | IO[bytes], *, reserve: Callable[[int], object] | None = None
) -> OnlineLogisticRegression | PortfolioLogisticRegression:
    """A model file of either kind (a portfolio's has a ``portfolio.npy`` member)."""
    try:
        with zipfile.ZipFile(file) as archive:
            portfolio = "portfolio.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        portfolio = False  # OnlineLogisticRegression.load says what is wrong with it
    if not isinstance(file, str | os.PathLike):
        file.seek(0)
    if portfolio:
        return PortfolioLogisticRegression.load(file, reserve=reserve)
    return OnlineLogisticRegression.load(file, reserve=reserve)


# ----------------------------------------------------------------------------- compiled driver
# A member's kernels: its optimizer's name and its update form (normalized, invariant).
KernelKey = tuple[str, bool, bool]
_DRIVERS: dict[tuple[KernelKey, ...], Callable[..., None]] = {}
_DRIVERS_LOCK = threading.Lock()


def _driver_source(members: tuple[KernelKey, ...]) -> str:
    bindings = "\n".join(
        f"learn_{k} = kernels_for(REGISTRY[{name!r}], normalized={normalized}, "
        f"invariant={invariant}).learn"
        for k, (name, normalized, invariant) in enumerate(members)
    )
    calls = "\n".join(
        f"    if active[{k}]:\n        learn_{k}(*member_{k})" for k in range(len(members))
    )
    parameters = ", ".join(f"member_{k}" for k in range(len(members)))
    return (
        f'"""Generated by optim.portfolio for members {list(members)}; do not edit."""\n'
        "import numba as nb\n\n"
        "from optim.kernels import kernels_for\n"
        "from optim.optimizers import REGISTRY\n\n"
        f"{bindings}\n\n\n"
        '@nb.njit(nogil=True, cache=True, error_model="numpy")\n'
        f"def learn_all(active, {parameters}):\n{calls}\n"
    )


def driver_for(members: tuple[KernelKey, ...]) -> Callable[..., None]:
    """``learn_all(active, args_0, args_1, ...)``: each active member's ``learn`` kernel (its
    optimizer's, in its update form) on its arguments, in one compiled call (generated and
    cached on disk as :mod:`optim.kernels` does)."""
    with _DRIVERS_LOCK:
        if members in _DRIVERS:
            return _DRIVERS[members]
        forms = "_".join(
            f"{name}{'n' * normalized}{'i' * invariant}" for name, normalized, invariant in members
        )
        name = f"adaserve_portfolio_{forms}_{CACHE_KEY}"
        path = COMPILED_DIRECTORY / f"{name}.py"
        if not path.exists():
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_text(_driver_source(members))
            os.replace(temporary, path)
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        _DRIVERS[members] = module.learn_all
        return module.learn_all


@nb.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _log_sigmoid(margin):
    return -np.logaddexp(0.0, -margin)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def mixed_margin(margins, active, combination, log_weights, out_member):
    """The mixture's margin ``log p - log(1 - p)`` of one row from its members' ``margins``
    (logs all the way: no probability rounds to 0 or 1); ``out_member[k]`` gets member ``k``'s
    ``[log p_k, log(1 - p_k)]`` and ``out_member[K]`` the combination's."""
    n_members = margins.shape[0]
    top = -np.inf
    for k in range(n_members + 1):
        if (k == n_members or active[k]) and log_weights[k] > top:
            top = log_weights[k]
    one_e = zero_e = -np.inf  # the combination: log sum_k c_k p_k, log sum_k c_k (1 - p_k)
    for k in range(n_members):
        if active[k]:
            out_member[k, 0] = _log_sigmoid(margins[k])
            out_member[k, 1] = _log_sigmoid(-margins[k])
            if combination[k] > 0.0:
                share = np.log(combination[k])
                one_e = np.logaddexp(one_e, share + out_member[k, 0])
                zero_e = np.logaddexp(zero_e, share + out_member[k, 1])
    out_member[n_members, 0], out_member[n_members, 1] = one_e, zero_e
    one = zero = -np.inf
    for k in range(n_members + 1):
        if k == n_members or active[k]:
            weight = log_weights[k] - top
            one = np.logaddexp(one, weight + out_member[k, 0])
            zero = np.logaddexp(zero, weight + out_member[k, 1])
    return one - zero


def initial_mixture(n_members: int) -> tuple[np.ndarray, np.ndarray]:
    """The mixture before any row: the combination's shares (:data:`FIRST_SHARE` on the first
    member, the rest equal) and the log prior weights (:data:`COMBINATION_PRIOR` on the
    combination, the rest shared equally by the members)."""
    if n_members == 1:
        combination = np.ones(1)
    else:
        combination = np.full(n_members, (1.0 - FIRST_SHARE) / (n_members - 1))
        combination[0] = FIRST_SHARE
    priors = np.append(np.full(n_members, (1.0 - COMBINATION_PRIOR) / n_members),
                       COMBINATION_PRIOR)  # fmt: skip
    return combination, np.log(priors)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def mixed_margins(margins, active, combination, log_weights):
    """The mixture's margin of every row (column) of ``margins``, the mixture as it stands."""
    out = np.empty(margins.shape[1])
    logs = np.empty((margins.shape[0] + 1, 2))
    for i in range(margins.shape[1]):
        out[i] = mixed_margin(margins[:, i], active, combination, log_weights, logs)
    return out


@nb.njit(nogil=True, cache=True, error_model="numpy")
def _renormalized(combination, active):
    """Scale the active members' shares to sum to 1 (equal shares if every one is 0)."""
    total = 0.0
    for k in range(combination.shape[0]):
        total += combination[k] if active[k] else 0.0
    for k in range(combination.shape[0]):
        if not active[k]:
            combination[k] = 0.0
        elif total > 0.0:
            combination[k] /= total
        else:
            combination[k] = 1.0 / np.count_nonzero(active)


@nb.njit(nogil=True, cache=True, error_model="numpy")
def mix_rows(
    margins, labels, weights, bounds, held, accepted, active, combination, log_weights, recent,
    leader, decay, rate, out_margin,
):  # fmt: skip
    """Every row's mixture margin from the rows before it (NaN in a refused batch), updating
    the mixture (``combination``, ``log_weights``), ``recent`` (each member's discounted loss
    sum, then their common discounted weight) and ``active`` (a member not in ``accepted`` of
    an accepted batch retires, its share of the combination going to the rest); returns the
    leader after the last row (the active member of highest weight) and how many times the
    lead changed hands.

    ``margins[k, i]``: member ``k``'s progressive margin of row ``i``; ``accepted[k, b]``:
    member ``k`` learned batch ``b``; ``held[i]``: row ``i`` was held out, only scored (the
    mixture does not learn from it); ``log_weights``: the members' and then the combination's
    log prior minus their weighted cumulative log-loss."""
    n_members = margins.shape[0]
    switches = 0
    logs = np.empty((n_members + 1, 2))
    for b in range(bounds.shape[0] - 1):
        learned = False
        for k in range(n_members):
            learned |= active[k] and accepted[k, b]
        if not learned:  # every active member refused it: the portfolio refuses it
            for i in range(bounds[b], bounds[b + 1]):
                out_margin[i] = np.nan
            continue
        for k in range(n_members):
            if active[k] and not accepted[k, b]:
                active[k] = False
                combination[k] = 0.0
        _renormalized(combination, active)
        for i in range(bounds[b], bounds[b + 1]):
            out_margin[i] = mixed_margin(margins[:, i], active, combination, log_weights, logs)
            if held[i]:
                continue
            y, h = labels[i], weights[i]
            recent[n_members] = decay * recent[n_members] + h
            top = -np.inf
            for k in range(n_members + 1):
                if k == n_members or active[k]:
                    loss = -(y * logs[k, 0] + (1.0 - y) * logs[k, 1])
                    log_weights[k] -= h * loss
                    if k < n_members:
                        recent[k] = decay * recent[k] + h * loss
                        # the combination's gradient: d log p(y) / d c_k
                        gradient = 0.0  # (each ratio p_k / p is below 1 / c_k: capped)
                        if y > 0.0:
                            gradient += y * np.exp(min(logs[k, 0] - logs[n_members, 0], 700.0))
                        if y < 1.0:
                            gradient += (1.0 - y) * np.exp(
                                min(logs[k, 1] - logs[n_members, 1], 700.0)
                            )
                        logs[k, 0] = rate * h * gradient  # (the row's logs are spent)
                        top = max(top, logs[k, 0])
            for k in range(n_members):
                if active[k]:
                    combination[k] *= np.exp(logs[k, 0] - top)
            _renormalized(combination, active)
            best = leader if active[leader] else -1
            for k in range(n_members):
                if active[k] and (best < 0 or log_weights[k] > log_weights[best]):
                    best = k
            if best != leader:
                leader = best
                switches += 1
    return leader, switches


# ----------------------------------------------------------------------------- the estimator
class PortfolioLogisticRegression:
    """``"optimizer": "auto"``: the members of ``members`` (default :data:`MEMBERS`)
    learn every row; predictions are their mixture's, rates and state the leader's (see the
    module docstring). Takes :class:`~optim.model.OnlineLogisticRegression`'s model settings,
    shared by every member, plus ``window`` of the leaderboard's recent losses.

    >>> import scipy.sparse as sp
    >>> model = PortfolioLogisticRegression(dim=4)
    >>> X = sp.csr_array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]] * 200)
    >>> model = model.partial_fit(X, [1, 0] * 200)
    >>> model.leader, model.predict_proba(X[:2]).round(2)[:, 1].tolist()
    ('vw-lr2', [1.0, 0.0])
    """

    def __init__(
        self,
        members: Sequence[Member] | None = None,
        *,
        window: int = DEFAULT_WINDOW,
        recent_window: int = 10_000,
        **settings: Any,
    ) -> None:
        members = tuple(MEMBERS if members is None else members)
        if not 1 <= len(members) <= MAX_MEMBERS:
            raise ConfigError(f"needs 1 to {MAX_MEMBERS} members", field="members")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ConfigError(f"member names must be unique, got {names}", field="members")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(f"must be a positive integer, got {window!r}", field="window")
        for key, default in _NOT_SHARED.items():
            if key in settings and settings.pop(key) != default:
                raise ConfigError("is a setting of each member with optimizer auto", field=key)
        feedback = settings.pop("feedback", None)
        unknown = sorted(set(settings) - set(_SHARED))
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {unknown}; valid: {sorted(_SHARED)}", field=unknown[0]
            )
        self.member_configs = members
        self.members: dict[str, OnlineLogisticRegression] = {}
        for k, member in enumerate(members):
            clash = sorted(set(member.settings) & {*_SHARED, "recent_window"})
            if clash:
                raise ConfigError(
                    f"member {member.name!r} sets {clash}, shared by the portfolio",
                    field=f"members[{k}]",
                )
            try:
                self.members[member.name] = OnlineLogisticRegression(
                    **{**settings, **member.settings}, recent_window=recent_window
                )
            except TypeError as exc:  # a setting the learner does not have
                raise ConfigError(f"member {member.name!r}: {exc}", field=f"members[{k}]") from None
        self.settings = dict(settings)
        self.window = window
        self._decay = math.exp(-1.0 / window)
        self._models = list(self.members.values())
        self._driver = driver_for(
            tuple((m.spec.name, m.normalized, m.invariant) for m in self._models)
        )
        self._active = np.ones(len(members), dtype=np.bool_)
        self._recent = np.zeros(len(members) + 1)  # discounted loss sums, their weight
        self._combination, self._log_weights = initial_mixture(len(members))
        self._leader = 0
        self.retired: dict[str, str] = {}  # member name -> why
        self.switches = 0
        self.step = 0
        self.metrics = ProgressiveMetrics(recent_window)
        self.holdout_metrics = ProgressiveMetrics(recent_window)  # the mixture's, held-out rows
        # Pending predictions (the mixture's margins served), learned when labelled as any row
        self.feedback = (
            None
            if feedback is None
            else Feedback(FeedbackPolicy.from_config(feedback), recent_window, self.dim)
        )

    # ----------------------------------------------------------------- members
    @property
    def leader(self) -> str:
        """The name of the member predicting now."""
        return self.member_configs[self._leader].name

    @property
    def leader_model(self) -> OnlineLogisticRegression:
        return self._models[self._leader]

    def member(self, name: str | None = None) -> OnlineLogisticRegression:
        """The member called ``name`` (the leader for ``None``)."""
        if name is None:
            return self.leader_model
        if name not in self.members:
            raise ConfigError(f"no member {name!r}; members: {list(self.members)}", field="member")
        return self.members[name]

    @classmethod
    def from_config(
        cls, optimizer: str | Mapping[str, Any] = AUTO, **settings: Any
    ) -> PortfolioLogisticRegression:
        """The portfolio ``{"name": "auto", "members": [...], "window": ...}`` (each optional)
        describes, with the model settings every member shares."""
        optimizer = {"name": AUTO} if isinstance(optimizer, str) else dict(optimizer)
        unknown = sorted(set(optimizer) - {"name", "members", "window"})
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {unknown} for auto; valid: members, window",
                field=f"optimizer.{unknown[0]}",
            )
        if settings.get("dim") is None:
            settings.pop("dim", None)
        return cls(
            members_of(optimizer),
            window=optimizer.get("window", DEFAULT_WINDOW),
            **settings,
        )

    # What the service and the parsers read of a model: the leader's (the members share them).
    @property
    def spec(self) -> OptimizerSpec:
        return self.leader_model.spec

    @property
    def hasher(self) -> FeatureHasher:
        return self.leader_model.hasher

    @property
    def features(self) -> FeatureOptions:
        return self.leader_model.features

    @property
    def holdout_every(self) -> int:
        """Every how many rows one is held out (0: none), by every member alike."""
        return self.leader_model.holdout_every

    @property
    def rows_seen(self) -> int:
        """Rows the portfolio has been given: learned (its step) or held out."""
        return self.step + self.holdout_metrics.rows

    @property
    def lazy(self) -> str:
        return self.leader_model.lazy

    @property
    def fit_intercept(self) -> bool:
        return self.leader_model.fit_intercept

    @property
    def dtype(self) -> str:
        return self.leader_model.dtype

    @property
    def times_touched(self) -> np.ndarray:
        return self.leader_model.times_touched

    @property
    def feature_names(self) -> dict[int, str]:
        return self.leader_model.feature_names

    def leaderboard(self) -> list[dict[str, Any]]:
        """Every member, best recent loss first: name, settings, recent (discounted) log-loss,
        progressive log-loss over all its rows, its weight in the mixture and share of the
        combination, whether it leads (highest weight) or has retired (and why)."""
        total_weight = self._recent[-1]
        weights = self.mixture_weights()
        rows = []
        for k, (member, model) in enumerate(zip(self.member_configs, self._models, strict=True)):
            recent = float(self._recent[k] / total_weight) if total_weight > 0 else None
            rows.append(
                {
                    "name": member.name,
                    "config": model.config["optimizer"]
                    | {key: v for key, v in member.settings.items() if key != "optimizer"},
                    "recent_log_loss": recent if self._active[k] else None,
                    "log_loss": model.metrics.to_dict()["overall"]["log_loss"],
                    "rows": model.step,
                    "weight": float(weights[k]),
                    "combination_share": float(self._combination[k]),
                    "leader": k == self._leader,
                    "retired": self.retired.get(member.name),
                }
            )
        return sorted(
            rows, key=lambda r: (r["recent_log_loss"] is None, r["recent_log_loss"] or 0.0)
        )

    # ----------------------------------------------------------------- configuration
    @property
    def config(self) -> dict[str, Any]:
        shared = {key: v for key, v in self.leader_model.config.items() if key in _SHARED}
        return {
            "optimizer": {
                "name": "auto",
                "members": [{"name": m.name, **m.settings} for m in self.member_configs],
                "window": self.window,
            },
            **shared,
            "recent_window": self.metrics.window,
            **({} if self.feedback is None else {"feedback": self.feedback.policy.to_config()}),
        }

    @property
    def dim(self) -> int:
        return self.leader_model.dim

    @property
    def state_bytes(self) -> int:
        return sum(m.state_bytes for m in self._models)

    @property
    def memory_bytes(self) -> int:
        """Every member's :attr:`~optim.model.OnlineLogisticRegression.memory_bytes` and the
        portfolio's own metrics."""
        window = self.metrics.window
        holdout = (
            ProgressiveMetrics.nbytes_for(window)
            if self.holdout_every
            else self.holdout_metrics.nbytes
        )
        own = ProgressiveMetrics.nbytes_for(window) + holdout + 3 * self._recent.nbytes
        own += 0 if self.feedback is None else self.feedback.memory_bytes
        return sum(m.memory_bytes for m in self._models) + own

    # ----------------------------------------------------------------- learning
    def to_batch(self, X: Features, y: object | None = None, sample_weight: object | None = None,
                 *, require_labels: bool = False) -> Batch:  # fmt: skip
        return self.leader_model.to_batch(X, y, sample_weight, require_labels=require_labels)

    def check_batch(self, batch: Batch, *, pending_rows: int = 0) -> None:
        """As :meth:`OnlineLogisticRegression.check_batch` (the members share their limits)."""
        self.leader_model.check_batch(batch, pending_rows=pending_rows)

    def learn(
        self, X: Features, y: object | None = None, sample_weight: object | None = None
    ) -> LearnResult:
        return self.learn_batch(self.to_batch(X, y, sample_weight, require_labels=True))

    def learn_batch(self, batch: Batch) -> LearnResult:
        """As :meth:`OnlineLogisticRegression.learn_batch`: raises the refusal of a batch
        every active member refused (nothing changed)."""
        outcome = self.learn_batches([batch])[0]
        if isinstance(outcome, NonFiniteUpdate):
            raise outcome
        return outcome

    def partial_fit(
        self, X: Features, y: object, sample_weight: object | None = None
    ) -> PortfolioLogisticRegression:
        self.learn(X, y, sample_weight)
        return self

    def learn_batches(
        self, batches: Sequence[Batch], *, check: bool = True
    ) -> list[LearnResult | NonFiniteUpdate]:
        """Every active member learns ``batches`` in one compiled call; each batch's outcome
        carries the mixture's progressive predictions (each row's from the rows before it)."""
        if not batches:
            return []
        whole = batches[0] if len(batches) == 1 else Batch.concatenated(batches)
        if check:
            self.check_batch(whole)
        calls = [model.learn_call(batches, check=False, whole=whole) for model in self._models]
        self._driver(self._active, *(call.arguments for call in calls))
        outcomes = [
            model.learn_outcomes(call) if self._active[k] else None
            for k, (model, call) in enumerate(zip(self._models, calls, strict=True))
        ]
        bounds = calls[0].bounds
        n_members, n_batches = len(self._models), len(batches)
        accepted = np.zeros((n_members, n_batches), dtype=np.bool_)
        for k in range(n_members):
            for b, outcome in enumerate(outcomes[k] or ()):
                accepted[k, b] = isinstance(outcome, LearnResult)
        was_active = self._active.copy()
        held = self._held_rows(batches, calls, bounds, accepted)
        margins = np.empty(whole.n_rows)
        self._leader, switches = mix_rows(
            np.stack([call.margins for call in calls]), whole.labels, calls[0].weights, bounds,
            held, accepted, self._active, self._combination, self._log_weights, self._recent,
            self._leader, self._decay, MIXING_RATE, margins,
        )  # fmt: skip
        self.switches += switches
        self._note_retired(was_active, outcomes)
        return self._outcomes(batches, calls, outcomes, margins, held)

    def _held_rows(
        self, batches: Sequence[Batch], calls: list[LearnCall], bounds: np.ndarray,
        accepted: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """Which rows the members held out (as their kernels decided: a batch's own mask, else
        their ``holdout_every``, counted over the rows they were given). Every member active
        through a batch was given the same rows before it, so decided alike; a batch every
        active member refused is refused by the portfolio (its rows: none held)."""
        held = np.zeros(bounds[-1], dtype=np.bool_)
        if not self.holdout_every and all(batch.holdout is None for batch in batches):
            return held
        alive = self._active.copy()
        for b in range(bounds.shape[0] - 1):
            if not (alive & accepted[:, b]).any():
                continue
            alive &= accepted[:, b]
            rows = slice(int(bounds[b]), int(bounds[b + 1]))
            held[rows] = calls[int(np.flatnonzero(alive)[0])].holdout[rows] == HELD_OUT
        return held

    def _note_retired(self, was_active: np.ndarray, outcomes: list[Any]) -> None:
        for k in np.flatnonzero(was_active & ~self._active):
            refusal = next(o for o in outcomes[k] if isinstance(o, NonFiniteUpdate))
            self.retired[self.member_configs[k].name] = str(refusal)

    def _outcomes(
        self, batches: Sequence[Batch], calls: list[LearnCall], outcomes: list[Any],
        mixed: np.ndarray, held: np.ndarray,
    ) -> list[LearnResult | NonFiniteUpdate]:  # fmt: skip
        """The mixture's predictions as each learned batch's result, its held-out rows'
        losses going to :attr:`holdout_metrics`; a batch every member refused (its margins
        NaN) gets the first active member's refusal."""
        whole, bounds = calls[0].whole, calls[0].bounds
        refused = {
            b: next(o[b] for o in outcomes if o is not None)
            for b in range(len(batches))
            if bounds[b + 1] > bounds[b] and np.isnan(mixed[bounds[b]])
        }
        kept = [b for b in range(len(batches)) if b not in refused]
        if not kept:
            return [refused[b] for b in range(len(batches))]
        rows = np.concatenate([np.arange(bounds[b], bounds[b + 1]) for b in kept])
        margins = mixed[rows]
        labels = whole.labels[rows]
        weights = None if whole.weights is None else whole.weights[rows]
        kept_bounds = np.cumsum([0, *(batches[b].n_rows for b in kept)], dtype=np.int64)
        probs, losses = score(margins, labels)
        kept_held = held[rows]
        if not kept_held.any():
            steps, holdout_means = kept_bounds, None
            means = self.metrics.update(losses, probs, labels, weights, kept_bounds)
        else:
            kept_whole = (
                whole
                if len(kept) == len(batches)
                else Batch.concatenated([batches[b] for b in kept])
            )
            steps = np.concatenate([[0], np.cumsum(~kept_held)])[kept_bounds]
            update_rows = OnlineLogisticRegression._update_rows
            means = update_rows(self.metrics, ~kept_held, losses, probs, kept_whole, kept_bounds)
            holdout_means = update_rows(
                self.holdout_metrics, kept_held, losses, probs, kept_whole, kept_bounds
            )
        learned = {}
        for position, b in enumerate(kept):
            part = slice(int(kept_bounds[position]), int(kept_bounds[position + 1]))
            self.step += int(steps[position + 1] - steps[position])
            result = LearnResult(
                part.stop - part.start, self.step, margins[part], probs[part], losses[part],
                float(means[position]),
            )  # fmt: skip
            if holdout_means is not None and steps[position + 1] - steps[position] < result.rows:
                holdout = (kept_held[part], float(holdout_means[position]))
                result = dataclasses.replace(result, holdout=holdout)
            learned[b] = result
        return [refused[b] if b in refused else learned[b] for b in range(len(batches))]

    # ----------------------------------------------------------------- prediction
    def decision_function(self, X: Features) -> np.ndarray:
        """The mixture's margins ``log p - log(1 - p)``. Never changes the model."""
        batch = self.to_batch(X)
        members = np.zeros((len(self._models), batch.n_rows))
        for k, model in enumerate(self._models):
            if self._active[k]:
                members[k] = model.decision_function(batch)
        return mixed_margins(members, self._active, self._combination, self._log_weights)

    def predict_proba(self, X: Features) -> np.ndarray:
        p = probabilities(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Features) -> np.ndarray:
        return (self.decision_function(X) > 0.0).astype(np.int64)

    def compiled_scoring(self) -> None:
        """None: the mixture has no one-call scoring path (its members' margins are mixed)."""
        return None

    def mixture_weights(self) -> np.ndarray:
        """Each member's weight in the mixture's prediction now, then the combination's (sum
        1; retired members 0)."""
        live = np.append(self._active, True)
        logs = np.where(live, self._log_weights, -np.inf)
        weights = np.exp(logs - logs.max())
        return weights / weights.sum()

    classes_ = np.array([0, 1])

    # ----------------------------------------------------------------- inspection
    def inspect_coordinates(
        self, indices: Sequence[int] = (), features: Sequence[str] = (), member: str | None = None
    ) -> list[dict[str, Any]]:
        """The leader's (or member ``member``'s) coordinates, each naming the member."""
        name = member or self.leader
        rows = self.member(member).inspect_coordinates(indices, features)
        return [{**row, "member": name} for row in rows]

    def rate_summary(self, *args: Any, member: str | None = None, **kwargs: Any) -> dict[str, Any]:
        return {
            **self.member(member).rate_summary(*args, **kwargs),
            "member": member or self.leader,
        }

    def rates_by_frequency(
        self, *args: Any, member: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return {
            **self.member(member).rates_by_frequency(*args, **kwargs),
            "member": member or self.leader,
        }

    def state_arrays(self, member: str | None = None) -> dict[str, np.ndarray]:
        return self.member(member).state_arrays()

    # ----------------------------------------------------------------- persistence
    def file_arrays(self, *, copy: bool = False) -> dict[str, np.ndarray]:
        """The portfolio's model file: ``portfolio`` (JSON: format, configuration, step, the
        mixture and the leader), its own progressive metrics, and ``member_<k>``, each member's
        whole model file as bytes (a picture taken now, whatever ``copy`` says: it holds each
        member's state once more while the file is written)."""
        state = {
            "format": FORMAT,
            "config": self.config,
            "step": self.step,
            "leader": self._leader,
            "switches": self.switches,
            "retired": self.retired,
            "recent": self._recent.tolist(),
            "active": self._active.tolist(),
            "combination": self._combination.tolist(),
            "log_weights": self._log_weights.tolist(),
        }
        arrays = {
            "portfolio": np.array(json.dumps(state)),
            **self.metrics.state(),
            **self.holdout_metrics.state("holdout"),
            **(self.feedback.state() if self.feedback is not None else {}),  # copies
        }
        for k, model in enumerate(self._models):
            arrays[f"member_{k}"] = np.frombuffer(model.to_bytes(), dtype=np.uint8)
        return arrays

    def save(self, file: str | os.PathLike[str] | IO[bytes]) -> None:
        save_file_arrays(file, self.file_arrays())

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
    ) -> PortfolioLogisticRegression:
        """Read a portfolio file without trusting it: stored members only (so none holds more
        than the file's bytes), the settings checked and ``reserve`` called with the bytes the
        portfolio will hold before any member's state is read, each member read and checked
        by :meth:`OnlineLogisticRegression.load` against its configuration, then the leader's
        choice. Raises :class:`~optim.errors.ModelFileError` naming the member and why."""
        try:
            archive = zipfile.ZipFile(file)
        except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
            raise ModelFileError(f"not a readable model file: {exc}") from None
        with archive:
            entries = _stored_entries(archive)
            state = _state_of(_read_member(archive, entries, "portfolio", _STATE_BYTES))
            config = dict(state["config"])
            if state["format"] == FORMAT_V1 and isinstance(config.get("optimizer"), dict):
                config["optimizer"] = {
                    k: v for k, v in config["optimizer"].items() if k != "hysteresis"
                }
            try:
                dim = config.get("dim")
                if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
                    raise ConfigError(f"must be a positive integer, got {dim!r}", field="dim")
                needed = memory_bytes_for(
                    config.get("optimizer"), dim, config.get("dtype", "float64"),
                    config.get("recent_window", 10_000),
                    feedback=config.get("feedback") is not None,
                    holdout_every=config.get("holdout_every", 0),
                ) + _pending_bytes(entries)  # fmt: skip
                if reserve is not None:
                    reserve(needed)
                if config.get("hash_bits") is not None:
                    del config["dim"]  # implied by hash_bits
                model = new_model(**config)
            except (ConfigError, TypeError) as exc:
                raise ModelFileError(f"has a bad setting: {exc}", member="portfolio") from None
            if not isinstance(model, PortfolioLogisticRegression):
                raise ModelFileError("is not a portfolio's configuration", member="portfolio")
            model._restore(archive, entries, state)
        return model

    def _restore(
        self, archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo], state: dict
    ) -> None:
        k_members = len(self._models)
        expected = {
            "portfolio", *_METRICS, *_HOLDOUT_METRICS, *(f"member_{k}" for k in range(k_members)),
            *(FEEDBACK_MEMBERS if self.feedback is not None else ()),
        }  # fmt: skip
        stray = sorted(set(entries) - expected)
        if stray:
            raise ModelFileError("is not a member of a portfolio file", member=stray[0])
        window = self.metrics.window
        ring_bytes = window * 6 * 8 + 4096
        metrics = {name: _read_member(archive, entries, name, ring_bytes) for name in _METRICS}
        check_metrics_arrays(metrics, window)
        holdout = None  # a file written before portfolios held rows out has none
        if any(name in entries for name in _HOLDOUT_METRICS):
            holdout = {
                name: _read_member(archive, entries, name, ring_bytes) for name in _HOLDOUT_METRICS
            }
            check_metrics_arrays(holdout, window, "holdout")
        for k, model in enumerate(self._models):
            name = f"member_{k}"
            raw = _read_member(archive, entries, name, None)
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise ModelFileError("must be the bytes of a model file", member=name)
            try:
                loaded = OnlineLogisticRegression.load(io.BytesIO(raw.tobytes()))
            except ModelFileError as exc:
                raise ModelFileError(f"holds a bad model file: {exc}", member=name) from None
            if loaded.config != model.config:
                raise ModelFileError(
                    f"holds a model of another configuration than member "
                    f"{self.member_configs[k].name!r}'s",
                    member=name,
                )
            self._models[k] = self.members[self.member_configs[k].name] = loaded
        self._restore_choice(state)
        if self.feedback is not None:
            self.feedback = _feedback_of(archive, entries, self.feedback.policy, window, self.dim)
        self.metrics = ProgressiveMetrics.from_state(metrics, window)
        if holdout is not None:
            self.holdout_metrics = ProgressiveMetrics.from_state(holdout, window, "holdout")

    def _restore_choice(self, state: dict) -> None:
        k_members = len(self._models)
        recent, active = state["recent"], state["active"]
        leader, switches, step, retired = (
            state["leader"], state["switches"], state["step"], state["retired"],
        )  # fmt: skip
        numbers = isinstance(recent, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in recent
        )
        if not numbers or len(recent) != k_members + 1 or not all(
            math.isfinite(v) and v >= 0 for v in recent
        ):  # fmt: skip
            raise ModelFileError(
                f"'recent' must be {k_members + 1} finite numbers >= 0", member="portfolio"
            )
        if not isinstance(active, list) or len(active) != k_members or not all(
            isinstance(v, bool) for v in active
        ):  # fmt: skip
            raise ModelFileError(f"'active' must be {k_members} booleans", member="portfolio")
        for key, value in (("leader", leader), ("switches", switches), ("step", step)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ModelFileError(f"{key!r} must be an integer >= 0", member="portfolio")
        if leader >= k_members or not active[leader]:
            raise ModelFileError(f"'leader' {leader} is not an active member", member="portfolio")
        names = {m.name for m in self.member_configs}
        if not isinstance(retired, dict) or not all(
            k in names and isinstance(v, str) for k, v in retired.items()
        ):  # fmt: skip
            raise ModelFileError("'retired' must map member names to reasons", member="portfolio")
        for k, model in enumerate(self._models):
            if active[k] and model.step != step:
                raise ModelFileError(
                    f"holds step {model.step}, the portfolio's is {step}", member=f"member_{k}"
                )
        self._recent = np.array(recent, dtype=np.float64)
        self._active = np.array(active, dtype=np.bool_)
        self._leader, self.switches, self.step, self.retired = leader, switches, step, retired
        if state["format"] == FORMAT_V1:  # no mixture yet: it starts from its prior, live only
            self._log_weights = initial_mixture(k_members)[1]
            self._combination = np.where(self._active, 1.0, 0.0) / np.count_nonzero(active)
            return
        self._combination, self._log_weights = _mixture_of(state, self._active)

    def info(self) -> dict[str, Any]:
        """What a model's info shows of the portfolio: leader (highest weight), switches, the
        combination's weight in the mixture, leaderboard."""
        return {
            "leader": self.leader,
            "switches": self.switches,
            "window": self.window,
            "combination_weight": float(self.mixture_weights()[-1]),
            "leaderboard": self.leaderboard(),
        }

    def __repr__(self) -> str:
        return (
            f"PortfolioLogisticRegression(members={list(self.members)}, leader={self.leader!r}, "
            f"step={self.step})"
        )


_METRICS = ("metrics_rows", "metrics_totals", "metrics_ring", "metrics_curve", "metrics_block")
_HOLDOUT_METRICS = tuple(name.replace("metrics", "holdout", 1) for name in _METRICS)
_STATE_KEYS_V1 = {"format", "config", "step", "leader", "switches", "retired", "recent", "active"}
_STATE_KEYS = _STATE_KEYS_V1 | {"combination", "log_weights"}


def _stored_entries(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS + 1 + len(_METRICS) + len(_HOLDOUT_METRICS) + len(FEEDBACK_MEMBERS):
        raise ModelFileError(f"has {len(infos)} members, more than a portfolio file's")
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if name in entries or not info.filename.endswith(".npy"):
            raise ModelFileError("is not a member of a portfolio file, or appears twice",
                                 member=info.filename)  # fmt: skip
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise ModelFileError("must be stored (not compressed, not encrypted)", member=name)
        entries[name] = info
    return entries


def _read_member(
    archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo], name: str, limit: int | None
) -> np.ndarray:
    """One ``.npy`` member, its header checked against its stored size (and ``limit``) before
    anything is allocated."""
    info = entries.get(name)
    if info is None:
        raise ModelFileError("is missing", member=name)
    if limit is not None and info.file_size > limit:
        raise ModelFileError(f"holds {info.file_size:,} bytes, more than {limit:,}", member=name)
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            if dtype.hasobject:
                raise ModelFileError("holds Python objects", member=name)
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > info.file_size:
                raise ModelFileError(
                    f"declares {nbytes:,} bytes in {info.file_size:,}", member=name
                )
            data = f.read(nbytes)
    except ModelFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"is unreadable: {exc}", member=name) from None
    if len(data) != nbytes:
        raise ModelFileError("is truncated", member=name)
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def _state_of(array: np.ndarray) -> dict[str, Any]:
    """The ``portfolio`` member's JSON, its shape checked (values by ``_restore_choice``)."""
    if array.dtype.kind != "U" or array.shape != ():
        raise ModelFileError("must be a JSON string", member="portfolio")
    text = str(array)
    if json_depth(text) > 8:
        raise ModelFileError("nests too deep", member="portfolio")
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise ModelFileError(f"is not JSON: {exc}", member="portfolio") from None
    if not isinstance(state, dict):
        raise ModelFileError("must be a JSON object", member="portfolio")
    if state.get("format") not in (FORMAT, FORMAT_V1):
        raise ModelFileError(f"is an unknown format {state.get('format')!r:.60}",
                             member="portfolio")  # fmt: skip
    keys = _STATE_KEYS if state["format"] == FORMAT else _STATE_KEYS_V1
    if set(state) != keys:
        raise ModelFileError(f"must hold exactly {sorted(keys)}", member="portfolio")
    if not isinstance(state["config"], dict):
        raise ModelFileError("'config' must be an object", member="portfolio")
    return state


def _mixture_of(state: dict[str, Any], active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A v2 file's combination (shares >= 0 of the active members, sum 1) and log weights
    (finite numbers, one a member and the combination's)."""
    combination, log_weights = state["combination"], state["log_weights"]
    k_members = active.shape[0]

    def numbers(values: object, n: int) -> bool:
        return (
            isinstance(values, list)
            and len(values) == n
            and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in values
            )
        )

    if not numbers(log_weights, k_members + 1):
        raise ModelFileError(f"'log_weights' must be {k_members + 1} finite numbers",
                             member="portfolio")  # fmt: skip
    shares = np.array(combination, dtype=np.float64) if numbers(combination, k_members) else None
    if (
        shares is None
        or (shares < 0).any()
        or (shares[~active] != 0).any()
        or not math.isclose(shares.sum(), 1.0, rel_tol=1e-9)
    ):
        raise ModelFileError(
            f"'combination' must be {k_members} shares >= 0 of the active members, summing to 1",
            member="portfolio",
        )
    return shares, np.array(log_weights, dtype=np.float64)


def _pending_bytes(entries: dict[str, zipfile.ZipInfo]) -> int:
    """The bytes a portfolio file's pending rows will hold, from their members' stored sizes
    (as :meth:`OnlineLogisticRegression.load` counts them)."""
    stored = sum(entries[name].file_size for name in FEEDBACK_MEMBERS if name in entries)
    times = entries.get("feedback_times")
    return stored + (0 if times is None else ROW_OVERHEAD_BYTES * (times.file_size // 8))


def _feedback_of(
    archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo], policy: FeedbackPolicy,
    window: int, dim: int,
) -> Feedback:  # fmt: skip
    """A portfolio file's pending rows and served metrics, checked as a single model's (all the
    feedback members or none: a file written before the portfolio took feedback has none)."""
    if not any(name in entries for name in FEEDBACK_MEMBERS):
        return Feedback(policy, window, dim)
    arrays = {name: _read_member(archive, entries, name, None) for name in FEEDBACK_MEMBERS}
    rules = feedback_rules(window)
    for name, value in arrays.items():
        check_member(name, value.dtype, value.shape, rules)
    check_feedback_state(arrays, dim, window)
    return Feedback.from_state(policy, window, dim, arrays)
