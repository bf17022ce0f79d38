"""Reading a model file without trusting it: every member checked before anything is allocated.

A model file (written by :func:`optim.model.save_file_arrays`) is a zip of ``.npy`` members, one
per name in ``MEMBERS``, as ``np.savez`` writes it. A file from elsewhere may claim anything, so
it is read in this order, and refused (:class:`~optim.errors.ModelFileError` naming the member
and why) at the first thing that is not what the format has:

1. The zip's end record: a directory larger than a model file's is refused before ``zipfile``
   parses it (a 64 MiB upload could otherwise hold a million entries).
2. Every entry: a member name of the format, once each, stored or deflated, not encrypted.
3. The small members (format, config, step, rows of metrics), each read whole under a bound.
   The configuration's JSON is bounded in size and nesting before it is parsed; it gives the
   dtype and shape every other member must have (:class:`Layout`).
4. Every other member's ``.npy`` header (a few bytes inflated): its dtype and shape against the
   configuration, and the member's declared size against its header. What the model will hold
   is then known (a server reserves it in its memory budget), before any array is allocated.
5. The arrays, each into an array of its declared size, a MiB at a time: ``zipfile`` inflates no
   further than a member's declared size and checks its CRC there, so a member whose data
   inflates past what it declares is refused without being inflated further.

The invariants of the state itself (finite values, the optimizer's non-negative slots, counters
consistent with the step, a step below 2**53) are :func:`check_state`'s, which
:meth:`OnlineLogisticRegression.from_arrays <optim.model.OnlineLogisticRegression.from_arrays>`
applies, on every load and to arrays given in memory alike.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

import numpy as np

from optim.errors import AdaserveError, ConfigError, ModelFileError
from optim.feedback import MEMBERS as FEEDBACK_MEMBERS
from optim.feedback import FeedbackPolicy
from optim.optimizers import OptimizerSpec, get_optimizer

FORMAT = "adaserve-model-v1"
# Steps stay exact integers in the float64 arithmetic of the optimizers' step-dependent terms.
MAX_STEP = 2**53
# The state's dtype setting -> (its float type, its counters' type).
STATE_DTYPES = {"float64": (np.float64, np.int64), "float32": (np.float32, np.uint32)}
REQUIRED_MEMBERS = (
    "format", "config", "step", "table", "counters", "feature_name_indices",
    "feature_name_keys", "metrics_rows", "metrics_totals", "metrics_ring",
)  # fmt: skip
# Written since the loss curve was added: a file without them loads with an empty curve.
# ``norm_sums``: normalized models' ``[T, N]`` (see optim._loop), in their files only. The
# feedback members: a model with a feedback setting's pending rows and served metrics (all or none).
# The holdout metrics (``holdout_*``, as ``metrics_*``) since holdout: without them, none yet.
HOLDOUT_MEMBERS = (
    "holdout_rows", "holdout_totals", "holdout_ring", "holdout_curve", "holdout_block"
)  # fmt: skip
OPTIONAL_MEMBERS = (
    "metrics_curve", "metrics_block", "norm_sums", *HOLDOUT_MEMBERS, *FEEDBACK_MEMBERS
)  # fmt: skip
# Normalized models' last state slot: a coordinate's largest |x| seen.
NORMALIZED_SLOT = "scale"
MEMBERS = REQUIRED_MEMBERS + OPTIONAL_MEMBERS
SMALL_MEMBERS = ("format", "config", "step", "metrics_rows")
MAX_CONFIG_CHARS = 1 << 16
# Pending rows and their non-zeros a file may declare (the memory budget bounds them first).
MAX_PENDING = 2**40
# The configuration nests three deep (config, optimizer, betas); room for a little more.
MAX_CONFIG_DEPTH = 8
MAX_CURVE_POINTS = 500  # ProgressiveMetrics' max_points
# A small member's declared size: a .npy header (numpy reads at most 10,000 bytes) and its text.
_MAX_NPY_HEADER = 10_000
_MAX_SMALL_MEMBER_BYTES = 2 * _MAX_NPY_HEADER + 4 * MAX_CONFIG_CHARS
# A model file's zip directory holds one short entry per member; beyond these bounds it is not
# one (and within them, an entry that is not a member is refused by name).
_MAX_ENTRIES = 64
_MAX_DIRECTORY_BYTES = 1 << 16
_READ_PIECE = 1 << 20
_CHECK_ROWS = 1 << 16  # rows of state checked at a time
_END = struct.Struct("<4s4H2LH")  # end of central directory record (zip APPNOTE 4.3.16)
_END64_LOCATOR = struct.Struct("<4sLQL")  # its zip64 locator (4.3.15), right before it
_END64 = struct.Struct("<4sQ2H2L4Q")  # the zip64 end record (4.3.14), right before that
# What zipfile and numpy raise for a malformed archive, member or .npy header.
_UNREADABLE = (
    zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError,
    RuntimeError, struct.error, SyntaxError, RecursionError, MemoryError, UnicodeError,
)  # fmt: skip


@dataclass(frozen=True)
class _Shape:
    """Shapes a member may have: one of ``exact``, or ``(n, *tail)`` with ``0 <= n <= up_to``."""

    exact: tuple[tuple[int, ...], ...] = ()
    up_to: int = -1
    tail: tuple[int, ...] = ()

    def allows(self, shape: tuple[int, ...]) -> bool:
        return shape in self.exact or (
            self.up_to >= 0
            and len(shape) == 1 + len(self.tail)
            and shape[1:] == self.tail
            and 0 <= shape[0] <= self.up_to
        )

    def __str__(self) -> str:
        if self.exact:
            return " or ".join(str(shape) for shape in self.exact)
        return f"{('n', *self.tail)} with n <= {self.up_to:,}".replace("'", "")


_STRING = "a string"
_SMALL_RULES: dict[str, tuple[Any, _Shape]] = {
    "format": (_STRING, _Shape(((),))),
    "config": (_STRING, _Shape(((),))),
    "step": (np.int64, _Shape(((),))),
    "metrics_rows": (np.int64, _Shape(((),))),
}


def check_member(name: str, dtype: np.dtype, shape: tuple[int, ...], rules: Mapping) -> None:
    """Refuse a member whose dtype or shape is not one ``rules`` (name -> (dtype, _Shape))
    allows for it."""
    kind, shapes = rules[name]
    if kind == _STRING:
        good_dtype = dtype.kind == "U" and dtype.byteorder in "<=|"
    else:
        good_dtype = dtype == np.dtype(kind)
    if not good_dtype or not shapes.allows(shape):
        wanted = kind if kind == _STRING else np.dtype(kind).name
        raise ModelFileError(
            f"is {dtype} of shape {shape}; the file's configuration has {wanted} of shape {shapes}",
            member=name,
        )


@dataclass(frozen=True)
class Layout:
    """What a configuration's model file holds: each member's dtype and shape follow from it."""

    config: dict[str, Any]  # the constructor's settings, ``dim`` dropped for ``hash_bits``
    dim: int
    spec: OptimizerSpec
    dtype: str
    recent_window: int
    max_feature_names: int
    normalized: bool = False
    feedback: FeedbackPolicy | None = None

    @classmethod
    def of_config(cls, text: str) -> Layout:
        """The layout a file's ``config`` member claims, validated as far as the shapes depend
        on it (the model's constructor validates the rest); nothing of the state is allocated."""
        if len(text) > MAX_CONFIG_CHARS:
            raise ModelFileError(
                f"is {len(text):,} characters, at most {MAX_CONFIG_CHARS:,}", member="config"
            )
        depth = json_depth(text)
        if depth > MAX_CONFIG_DEPTH:
            raise ModelFileError(
                f"nests {depth:,} deep, at most {MAX_CONFIG_DEPTH}", member="config"
            )
        try:
            config = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ModelFileError(f"is not JSON: {exc}", member="config") from None
        if not isinstance(config, dict):
            raise ModelFileError("is not a JSON object", member="config")
        if config.get("hash_bits") is not None:
            hash_bits = config["hash_bits"]
            if not _is_int(hash_bits) or not 1 <= hash_bits <= 40:
                raise ModelFileError(f"has a bad hash_bits {hash_bits!r}", member="config")
            config.pop("dim", None)
            dim = 2**hash_bits
        else:
            config.pop("hash_bits", None)
            dim = config.get("dim")
            if not _is_int(dim) or dim < 1:
                raise ModelFileError(f"has a bad dim {dim!r}", member="config")
        dtype = config.get("dtype", "float64")
        if dtype not in STATE_DTYPES:
            raise ModelFileError(
                f"has dtype {dtype!r}, not one of {list(STATE_DTYPES)}", member="config"
            )
        window = config.get("recent_window", 10_000)
        if not _is_int(window) or window < 1:
            raise ModelFileError(f"has a bad recent_window {window!r}", member="config")
        max_names = config.get("max_feature_names", 0)
        if not _is_int(max_names) or max_names < 0:
            raise ModelFileError(f"has a bad max_feature_names {max_names!r}", member="config")
        normalized = config.get("normalized", False)
        if not isinstance(normalized, bool):
            raise ModelFileError(f"has a bad normalized {normalized!r}", member="config")
        feedback = None
        if config.get("feedback") is not None:
            try:
                feedback = FeedbackPolicy.from_config(config["feedback"])
            except ConfigError as error:
                raise ModelFileError(f"has {error}", member="config") from None
        optimizer = config.get("optimizer")
        try:
            spec = get_optimizer(
                optimizer.get("name") if isinstance(optimizer, dict) else optimizer
            )
            spec.resolve(optimizer if isinstance(optimizer, dict) else {})
        except AdaserveError as error:
            raise ModelFileError(f"has {error}", member="config") from None
        return cls(config, dim, spec, dtype, window, max_names, normalized, feedback)

    def rules(self, metrics_rows: int) -> dict[str, tuple[Any, _Shape]]:
        """Each member's dtype and shapes (the ring holds the rows seen, or older files the
        whole window)."""
        float_type, counter_type = STATE_DTYPES[self.dtype]
        rows = self.dim + 1  # one per coordinate and the intercept
        names = _Shape(up_to=min(self.max_feature_names, self.dim))
        recent = min(metrics_rows, self.recent_window)
        return {
            **_SMALL_RULES,
            "table": (float_type, _Shape(((rows, 1 + len(self.spec.slots) + self.normalized),))),
            "counters": (counter_type, _Shape(((rows, 2),))),
            "feature_name_indices": (np.int64, names),
            "feature_name_keys": (_STRING, names),
            "metrics_totals": (np.float64, _Shape(((4,),))),
            "metrics_ring": (np.float64, _Shape(((recent, 6), (self.recent_window, 6)))),
            "metrics_curve": (np.float64, _Shape(up_to=MAX_CURVE_POINTS, tail=(3,))),
            "metrics_block": (np.float64, _Shape(((4,),))),
            "norm_sums": (np.float64, _Shape(((2,),))),
            "holdout_rows": (np.int64, _Shape(((),))),
            "holdout_totals": (np.float64, _Shape(((4,),))),
            # its length (the holdout rows seen, at most the window) is checked by check_state
            "holdout_ring": (np.float64, _Shape(up_to=self.recent_window, tail=(6,))),
            "holdout_curve": (np.float64, _Shape(up_to=MAX_CURVE_POINTS, tail=(3,))),
            "holdout_block": (np.float64, _Shape(((4,),))),
            **(feedback_rules(self.recent_window) if self.feedback is not None else {}),
        }


def feedback_rules(window: int) -> dict[str, tuple[Any, _Shape]]:
    """The feedback members' dtypes and shapes (a ``window``-row recent window); how their
    sizes agree with each other is :func:`optim.feedback.check_feedback_state`'s."""
    any_rows = _Shape(up_to=MAX_PENDING)
    return {
        "feedback_ids": (_STRING, any_rows),
        "feedback_times": (np.float64, any_rows),
        "feedback_margins": (np.float64, any_rows),
        "feedback_indptr": (np.int64, any_rows),
        "feedback_indices": (np.int64, any_rows),
        "feedback_values": (np.float64, any_rows),
        "feedback_counts": (np.float64, _Shape(((6,),))),
        "feedback_delays": (np.float64, _Shape(up_to=window)),
        "feedback_metrics_rows": (np.int64, _Shape(((),))),
        "feedback_metrics_totals": (np.float64, _Shape(((4,),))),
        "feedback_metrics_ring": (np.float64, _Shape(up_to=window, tail=(6,))),
        "feedback_metrics_curve": (np.float64, _Shape(up_to=MAX_CURVE_POINTS, tail=(3,))),
        "feedback_metrics_block": (np.float64, _Shape(((4,),))),
    }


def check_arrays(arrays: Mapping[str, Any]) -> Layout:
    """The layout of a model file's arrays, every array's name, dtype and shape checked."""
    missing = [name for name in REQUIRED_MEMBERS if name not in arrays]
    if missing:
        raise ModelFileError(f"is missing (the file lacks {missing})", member=missing[0])
    for name in arrays:
        if name not in MEMBERS:
            raise ModelFileError(f"is not a member of a model file ({list(MEMBERS)})", member=name)
    for name in SMALL_MEMBERS:
        value = np.asarray(arrays[name])
        check_member(name, value.dtype, value.shape, _SMALL_RULES)
    if str(arrays["format"]) != FORMAT:
        raise ModelFileError(f"is an unknown format {str(arrays['format'])!r}", member="format")
    layout = Layout.of_config(str(arrays["config"]))
    metrics_rows = int(arrays["metrics_rows"])
    if metrics_rows < 0:
        raise ModelFileError(f"is negative: {metrics_rows}", member="metrics_rows")
    if layout.normalized != ("norm_sums" in arrays):
        raise ModelFileError(
            "is in the files of normalized models, and only there", member="norm_sums"
        )
    rules = layout.rules(metrics_rows)
    for name, value in arrays.items():
        if name not in rules:  # a feedback member of a model without feedback
            raise ModelFileError(
                "is pending rows, but the configuration has no feedback", member=name
            )
        if not isinstance(value, _Placeholder):
            value = np.asarray(value)
        check_member(name, value.dtype, value.shape, rules)
    return layout


METRICS_MEMBERS = ("metrics_rows", "metrics_totals", "metrics_ring", "metrics_curve",
                   "metrics_block")  # fmt: skip


def check_metrics_arrays(arrays: Mapping[str, Any], window: int, prefix: str = "metrics") -> None:
    """The progressive metrics' arrays (:meth:`ProgressiveMetrics.state` with ``prefix``) of a
    model with a ``window``-row recent window, checked as in a model file: dtypes, shapes,
    finite values."""
    names = [name.replace("metrics", prefix, 1) for name in METRICS_MEMBERS]
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ModelFileError(f"is missing (the file lacks {missing})", member=missing[0])
    rows = np.asarray(arrays[f"{prefix}_rows"])
    check_member(
        f"{prefix}_rows", rows.dtype, rows.shape, {f"{prefix}_rows": _SMALL_RULES["metrics_rows"]}
    )
    if int(rows) < 0:
        raise ModelFileError(f"is negative: {int(rows)}", member=f"{prefix}_rows")
    rules = {
        f"{prefix}_totals": (np.float64, _Shape(((4,),))),
        f"{prefix}_ring": (np.float64, _Shape(((min(int(rows), window), 6), (window, 6)))),
        f"{prefix}_curve": (np.float64, _Shape(up_to=MAX_CURVE_POINTS, tail=(3,))),
        f"{prefix}_block": (np.float64, _Shape(((4,),))),
    }
    for name in rules:
        value = np.asarray(arrays[name])
        check_member(name, value.dtype, value.shape, rules)
        if not np.isfinite(value).all():
            raise ModelFileError("holds non-finite values", member=name)
    if arrays[f"{prefix}_block"][0] < 1:
        raise ModelFileError("holds a block of fewer than one row", member=f"{prefix}_block")


def check_state(
    spec: OptimizerSpec, arrays: Mapping[str, np.ndarray], *, normalized: bool = False
) -> None:
    """The invariants every state this library writes keeps, on arrays that passed
    :func:`check_arrays`: a step below 2**53 (2**32 for float32 state), finite state and
    metrics, the optimizer's non-negative slots, counters consistent with the step, and feature
    names at distinct coordinates. Checked a block of rows at a time (small temporaries)."""
    step = int(arrays["step"])
    table, counters = arrays["table"], arrays["counters"]
    limit = 2**32 if counters.dtype == np.uint32 else MAX_STEP
    if not 0 <= step < limit:
        raise ModelFileError(f"is {step}, outside [0, 2**{limit.bit_length() - 1})", member="step")
    nonnegative = {1 + spec.slots.index(slot): slot for slot in spec.nonnegative_slots}
    if normalized:
        nonnegative[1 + len(spec.slots)] = NORMALIZED_SLOT
        sums = arrays["norm_sums"]
        if not (np.isfinite(sums).all() and (sums >= 0).all()):
            raise ModelFileError(
                f"holds {sums.tolist()}, not two finite sums >= 0", member="norm_sums"
            )
    for start in range(0, len(table), _CHECK_ROWS):
        block = slice(start, start + _CHECK_ROWS)
        _check_rows(spec.name, nonnegative, table[block], counters[block], start, step)
    for prefix in ("metrics", "holdout"):
        for name in (f"{prefix}_totals", f"{prefix}_ring", f"{prefix}_curve", f"{prefix}_block"):
            if name in arrays and not np.isfinite(arrays[name]).all():
                raise ModelFileError("holds non-finite values", member=name)
        if f"{prefix}_block" in arrays and arrays[f"{prefix}_block"][0] < 1:
            raise ModelFileError("holds a block of fewer than one row", member=f"{prefix}_block")
    holdout = [name for name in HOLDOUT_MEMBERS if name in arrays]
    if holdout and len(holdout) != len(HOLDOUT_MEMBERS):
        raise ModelFileError(
            f"holds {holdout} but not all of {list(HOLDOUT_MEMBERS)}", member=holdout[0]
        )
    if holdout:
        rows, ring = int(arrays["holdout_rows"]), len(arrays["holdout_ring"])
        if not 0 <= rows < MAX_STEP:
            raise ModelFileError(f"is {rows}, outside [0, 2**53)", member="holdout_rows")
        if ring > rows:
            raise ModelFileError(f"holds {ring} rows of {rows} held out", member="holdout_ring")
    indices = arrays["feature_name_indices"]
    if indices.shape != arrays["feature_name_keys"].shape:
        raise ModelFileError(
            f"holds {indices.size} indices for {arrays['feature_name_keys'].size} names",
            member="feature_name_keys",
        )
    if indices.size and (indices.min() < 0 or indices.max() >= len(table) - 1):
        raise ModelFileError(
            f"holds an index outside [0, {len(table) - 1})", member="feature_name_indices"
        )
    if np.unique(indices).size != indices.size:
        raise ModelFileError("holds an index twice", member="feature_name_indices")


def _check_rows(
    optimizer: str,
    nonnegative: Mapping[int, str],
    table: np.ndarray,
    counters: np.ndarray,
    first: int,
    step: int,
) -> None:
    finite = np.isfinite(table)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        raise ModelFileError(
            f"holds non-finite values (first {table[row, column]} at coordinate "
            f"{first + row}, column {column})",
            member="table",
        )
    for column, slot in nonnegative.items():
        negative = np.flatnonzero(table[:, column] < 0)
        if negative.size:
            raise ModelFileError(
                f"holds a negative {optimizer} {slot} ({table[negative[0], column]:g} at "
                f"coordinate {first + negative[0]}); the optimizer never makes one",
                member="table",
            )
    last, times = counters[:, 0], counters[:, 1]
    problem = None
    if int(counters.min()) < 0:
        problem = "holds a negative counter"
    elif int(last.max()) > step:
        problem = f"holds a last-touched step {int(last.max())} beyond the step {step}"
    elif int(times.max()) > step:
        problem = f"holds a coordinate touched {int(times.max())} times in {step} steps"
    elif (times > last).any():
        problem = "holds a coordinate touched more times than its last-touched step"
    if problem:
        raise ModelFileError(problem, member="counters")


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    dtype: np.dtype
    shape: tuple[int, ...]
    header_bytes: int

    @property
    def nbytes(self) -> int:
        count = 1
        for n in self.shape:
            count *= n  # Python integers: a claimed shape of 10**13 does not overflow
        return count * self.dtype.itemsize


class ModelFileReader:
    """A model file opened and checked up to its arrays (steps 1-4 of the module docstring);
    :meth:`arrays` then reads them (step 5). A context manager: it closes the archive."""

    def __init__(self, file: str | os.PathLike[str] | IO[bytes]) -> None:
        self._archive = _open_archive(file)
        try:
            self._entries = _check_entries(self._archive)
            headers = {name: self._header(name, small=True) for name in SMALL_MEMBERS}
            for name, member in headers.items():
                check_member(name, member.dtype, member.shape, _SMALL_RULES)
            small = {name: self._read(name, member) for name, member in headers.items()}
            headers.update(
                (name, self._header(name)) for name in self._entries if name not in small
            )
            self._headers = headers
            self._small = small
            # Every member's name, dtype and shape, as check_arrays checks arrays in memory.
            unread = {
                n: _Placeholder(m.dtype, m.shape) for n, m in headers.items() if n not in small
            }
            self.layout = check_arrays({**small, **unread})
        except BaseException:
            self._archive.close()
            raise

    def __enter__(self) -> ModelFileReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._archive.close()

    def member_bytes(self, name: str) -> int:
        """Bytes of one member's array as the file declares it (0 if absent)."""
        member = self._headers.get(name)
        return 0 if member is None else member.nbytes

    def arrays(self) -> dict[str, np.ndarray]:
        """Every member's array, read under its declared size (step 5)."""
        return {
            name: self._small[name] if name in self._small else self._read(name, member)
            for name, member in self._headers.items()
        }

    def _header(self, name: str, *, small: bool = False) -> _Member:
        info = self._entries[name]
        if small and info.file_size > _MAX_SMALL_MEMBER_BYTES:
            raise ModelFileError(
                f"declares {info.file_size:,} bytes, at most {_MAX_SMALL_MEMBER_BYTES:,}",
                member=name,
            )
        try:
            with self._archive.open(info) as stream:
                version = np.lib.format.read_magic(stream)
                if version == (1, 0):
                    header = np.lib.format.read_array_header_1_0(stream, _MAX_NPY_HEADER)
                elif version == (2, 0):
                    header = np.lib.format.read_array_header_2_0(stream, _MAX_NPY_HEADER)
                else:
                    raise ModelFileError(f"is .npy version {version}, not 1.0 or 2.0", member=name)
                header_bytes = stream.tell()
        except AdaserveError:
            raise
        except _UNREADABLE as exc:
            raise ModelFileError(f"is not readable: {exc}", member=name) from None
        shape, fortran_order, dtype = header
        if fortran_order or dtype.hasobject or dtype.fields is not None or dtype.subdtype:
            raise ModelFileError(
                f"is {dtype} (Fortran order: {fortran_order}), not a plain array of numbers or "
                f"strings",
                member=name,
            )
        if any(not _is_int(n) or n < 0 for n in shape):
            raise ModelFileError(f"declares shape {shape}", member=name)
        member = _Member(info, dtype, tuple(shape), header_bytes)
        if info.file_size != header_bytes + member.nbytes:
            raise ModelFileError(
                f"declares {info.file_size:,} bytes, but its header says "
                f"{header_bytes + member.nbytes:,} ({dtype} of shape {tuple(shape)})",
                member=name,
            )
        return member

    def _read(self, name: str, member: _Member) -> np.ndarray:
        try:
            array = np.empty(member.shape, dtype=member.dtype)
            data = memoryview(array.reshape(-1).view(np.uint8))
            with self._archive.open(member.info) as stream:
                stream.seek(member.header_bytes)
                done = 0
                while done < member.nbytes:
                    got = stream.readinto(data[done : done + _READ_PIECE])
                    if not got:
                        raise ModelFileError(
                            f"ends after {done:,} of its {member.nbytes:,} bytes", member=name
                        )
                    done += got
        except AdaserveError:
            raise
        except _UNREADABLE as exc:
            raise ModelFileError(f"is not readable: {exc}", member=name) from None
        return array


@dataclass(frozen=True)
class _Placeholder:
    """A member's dtype and shape before its data is read (what check_arrays looks at)."""

    dtype: np.dtype
    shape: tuple[int, ...]


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in a JSON text (strings skipped), without parsing it."""
    structure = re.sub(r'"(?:[^"\\]|\\.)*"', "", text).encode("utf-8", "replace")
    codes = np.frombuffer(structure, dtype=np.uint8)
    opening = (codes == ord("[")) | (codes == ord("{"))
    closing = (codes == ord("]")) | (codes == ord("}"))
    levels = np.cumsum(opening.astype(np.int64) - closing)
    return int(levels.max()) if levels.size else 0


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _open_archive(file: str | os.PathLike[str] | IO[bytes]) -> zipfile.ZipFile:
    try:
        if isinstance(file, str | os.PathLike):
            with open(file, "rb") as f:
                _check_directory_size(f)
        else:
            _check_directory_size(file)
        return zipfile.ZipFile(file)
    except AdaserveError:
        raise
    except _UNREADABLE as exc:
        raise ModelFileError(f"not a readable model file: {exc}") from None


def _check_directory_size(f: IO[bytes]) -> None:
    """Refuse a zip whose directory is larger than a model file's, from its end records (found
    where ``zipfile`` finds them) before ``zipfile`` reads the directory into objects."""
    size = f.seek(0, os.SEEK_END)
    tail_size = min(size, _END.size + 0xFFFF)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    at = tail_size - _END.size
    if not (tail[at:].startswith(b"PK\x05\x06") and tail[-2:] == b"\0\0"):
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _END.size > tail_size:
            raise ModelFileError("not a readable model file: it has no zip end record")
    end = _END.unpack_from(tail, at)
    entries, directory_bytes = end[4], end[5]
    locator_at = size - tail_size + at - _END64_LOCATOR.size
    if locator_at >= _END64.size:
        f.seek(locator_at)
        if f.read(4) == b"PK\x06\x07":
            f.seek(locator_at - _END64.size)
            end64 = _END64.unpack(f.read(_END64.size))
            if end64[0] == b"PK\x06\x06":
                entries, directory_bytes = end64[7], end64[8]
    f.seek(0)
    if entries > _MAX_ENTRIES or directory_bytes > _MAX_DIRECTORY_BYTES:
        raise ModelFileError(
            f"its zip directory declares {entries:,} entries in {directory_bytes:,} bytes; a "
            f"model file has {len(MEMBERS)} members at most"
        )


def _check_entries(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Each entry by member name: only the format's members, once each, stored or deflated."""
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if name not in MEMBERS or not info.filename.endswith(".npy"):
            raise ModelFileError(
                f"is not a member of a model file ({list(MEMBERS)})", member=info.filename
            )
        if name in entries:
            raise ModelFileError("appears twice", member=name)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(
                f"is compressed with method {info.compress_type}; a model file's members are "
                f"stored (0) or deflated (8)",
                member=name,
            )
        if info.flag_bits & 0x1:
            raise ModelFileError("is encrypted", member=name)
        entries[name] = info
    missing = [name for name in REQUIRED_MEMBERS if name not in entries]
    if missing:
        raise ModelFileError(f"is missing (the file lacks {missing})", member=missing[0])
    return entries
