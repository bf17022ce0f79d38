"""Delayed labels: rows predicted with an id wait in a pending table until their label arrives.

A model configured with ``feedback={"ttl_seconds": T, "on_expiry": "negative" | "drop"}`` holds a
:class:`Feedback`: each row predicted with an id is remembered (its features, the margin served
and the time it was served) until a label arrives for it, when it is learned as any labelled row
is, or until it is ``T`` seconds old, when it expires: learned as a non-click (``negative``) or
forgotten (``drop``).

Every change of the table is an :class:`FeedbackEntry` (remember, label, expire, drop) with a
sequence number: a log that holds them in order rebuilds the table exactly (:meth:`Feedback.replay`
skips those the table already holds, e.g. those written before a snapshot at the same step).
Times are given by the caller (seconds since the epoch) and never go backwards in the table: an
entry's time is at least the previous one's.

Served metrics compare the probability served at prediction time with the label that arrived
(progressive metrics of the served margins), with the delay between the two and the join rate.
"""

from __future__ import annotations

import json
import math
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optim.batch import Batch
from optim.errors import ConfigError, ModelFileError
from optim.metrics import ProgressiveMetrics, log_losses, probabilities

ON_EXPIRY = ("negative", "drop")
MAX_TTL_SECONDS = 366 * 86_400
MAX_ID_CHARS = 256
ENTRY_KINDS = ("remember", "label", "expire", "drop")
# What one pending row costs in memory beyond its non-zeros (16 bytes each) and its id's
# characters: its record, two small arrays' headers and its dict entry (measured by
# loadtest/bench_http.py's pending-memory figure, rounded up).
ROW_OVERHEAD_BYTES = 400
# Ids of rows labelled or expired remembered for the error message of a late label (bounded).
_RESOLVED_IDS = 100_000
# feedback_counts: sequence number, clock, labelled, expired as negatives, dropped, delays seen
_COUNTS = 6
MEMBERS = (
    "feedback_ids", "feedback_times", "feedback_margins", "feedback_indptr", "feedback_indices",
    "feedback_values", "feedback_counts", "feedback_delays", "feedback_metrics_rows",
    "feedback_metrics_totals", "feedback_metrics_ring", "feedback_metrics_curve",
    "feedback_metrics_block",
)  # fmt: skip
DELAY_QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class FeedbackPolicy:
    """How long a pending row waits for its label, and what becomes of it then."""

    ttl_seconds: float
    on_expiry: str

    @classmethod
    def from_config(cls, value: object) -> FeedbackPolicy:
        """The policy of a ``feedback`` setting; :class:`ConfigError` naming what is wrong."""
        if not isinstance(value, Mapping):
            raise ConfigError(
                f'must be {{"ttl_seconds": ..., "on_expiry": ...}}, got {value!r}', field="feedback"
            )
        unknown = sorted(set(value) - {"ttl_seconds", "on_expiry"})
        if unknown:
            raise ConfigError(f"has unknown key(s) {unknown}", field="feedback")
        ttl = value.get("ttl_seconds")
        if (
            isinstance(ttl, bool)
            or not isinstance(ttl, int | float)
            or not math.isfinite(ttl)
            or not 0 < ttl <= MAX_TTL_SECONDS
        ):
            raise ConfigError(
                f"must be a number of seconds in (0, {MAX_TTL_SECONDS}], got {ttl!r}",
                field="feedback.ttl_seconds",
            )
        on_expiry = value.get("on_expiry", "negative")
        if on_expiry not in ON_EXPIRY:
            raise ConfigError(
                f"must be one of {list(ON_EXPIRY)}, got {on_expiry!r}", field="feedback.on_expiry"
            )
        return cls(float(ttl), str(on_expiry))

    def to_config(self) -> dict[str, Any]:
        return {"ttl_seconds": self.ttl_seconds, "on_expiry": self.on_expiry}


@dataclass(frozen=True)
class FeedbackEntry:
    """One change of a pending table, as a log record holds it beside its rows: ``remember``
    (the record's rows, with the ``margins`` served), ``label`` and ``expire`` (the record's rows
    are the pending rows learned, with their labels), ``drop`` (no rows)."""

    kind: str
    seq: int
    at: float
    ids: tuple[str, ...]
    margins: tuple[float, ...] = ()

    def to_json(self) -> bytes:
        # floats as repr: every float64 round-trips; ensure_ascii: every Python string does
        body: dict[str, Any] = {"k": self.kind, "s": self.seq, "t": self.at, "ids": self.ids}
        if self.kind == "remember":
            body["m"] = self.margins
        return json.dumps(body, separators=(",", ":")).encode("ascii")

    @classmethod
    def from_json(cls, data: bytes) -> FeedbackEntry:
        """The entry of a log record (ValueError if it does not hold together)."""
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("k") not in ENTRY_KINDS:
            raise ValueError("a feedback entry of no known kind")
        ids, margins = body.get("ids"), body.get("m", [])
        seq, at = body.get("s"), body.get("t")
        if (
            type(seq) is not int
            or seq < 1
            or not isinstance(at, float | int)
            or not math.isfinite(at)
            or not isinstance(ids, list)
            or not all(isinstance(i, str) for i in ids)
            or not isinstance(margins, list)
            or not all(isinstance(m, float | int) and math.isfinite(m) for m in margins)
            or (body["k"] == "remember" and len(margins) != len(ids))
        ):
            raise ValueError("a malformed feedback entry")
        return cls(body["k"], seq, float(at), tuple(ids), tuple(float(m) for m in margins))


@dataclass(eq=False)
class PendingRow:
    at: float
    margin: float
    indices: np.ndarray
    values: np.ndarray
    # Taken by a batch being learned ("label" or "expire"): not to be taken again meanwhile.
    claimed: str | None = None


def check_ids(ids: object, n_rows: int | None = None, *, field: str = "ids") -> list[str]:
    """``ids`` as a list of non-empty strings of at most :data:`MAX_ID_CHARS` characters (one
    per row when ``n_rows`` is given); :class:`ConfigError` naming the first bad one."""
    if not isinstance(ids, list):
        raise ConfigError("must be a list of strings", field=field)
    if n_rows is not None and len(ids) != n_rows:
        raise ConfigError(f"has {len(ids)} ids for {n_rows} rows", field=field)
    for row, value in enumerate(ids):
        if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
            raise ConfigError(
                f"must be a string of 1 to {MAX_ID_CHARS} characters, got {value!r:.80}",
                field=field,
                row=row,
            )
    return ids


def _row_bytes(identifier: str, nnz: int) -> int:
    return ROW_OVERHEAD_BYTES + sys.getsizeof(identifier) + 16 * nnz


@dataclass(eq=False)
class Feedback:
    """A model's pending rows (in the order they were served, which is their time order) and its
    served metrics. Each method that changes it returns the :class:`FeedbackEntry` to log."""

    policy: FeedbackPolicy
    window: int
    dim: int
    pending: dict[str, PendingRow] = field(default_factory=dict)
    seq: int = 0
    clock: float = 0.0
    labelled: int = 0
    expired: int = 0
    dropped: int = 0
    served: ProgressiveMetrics = field(init=False)
    # The delays (seconds) of the last ``window`` labels, a ring; ``delays_seen`` in all.
    delays: np.ndarray = field(init=False)
    delays_seen: int = 0
    pending_bytes: int = 0
    _resolved: OrderedDict[str, str] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.served = ProgressiveMetrics(self.window)
        self.delays = np.zeros(self.window)

    # ---------------------------------------------------------------- questions
    def now(self, wall_clock: float) -> float:
        """The table's time for ``wall_clock``: never before an earlier entry's."""
        return max(float(wall_clock), self.clock)

    @staticmethod
    def fixed_bytes(window: int) -> int:
        """The served metrics and delays at their largest (a window of ``window`` rows)."""
        return ProgressiveMetrics.nbytes_for(window) + 8 * window

    @property
    def memory_bytes(self) -> int:
        """:meth:`fixed_bytes` and the pending rows."""
        return self.fixed_bytes(self.window) + self.pending_bytes

    def bytes_for(self, ids: Sequence[str], batch: Batch) -> int:
        """What remembering ``batch``'s rows under ``ids`` would add to :attr:`memory_bytes`."""
        sizes = np.diff(batch.indptr)
        return sum(_row_bytes(i, int(n)) for i, n in zip(ids, sizes, strict=True))

    def conflicts(self, ids: Sequence[str]) -> list[str]:
        """Ids among ``ids`` that are pending already or given twice."""
        seen: set[str] = set()
        out = []
        for identifier in ids:
            if identifier in self.pending or identifier in seen:
                out.append(identifier)
            seen.add(identifier)
        return out

    def refusals(self, ids: Sequence[str]) -> dict[str, str]:
        """Ids among ``ids`` that cannot be labelled now, each with why."""
        seen: set[str] = set()
        out = {}
        for identifier in ids:
            row = self.pending.get(identifier)
            if identifier in seen:
                out[identifier] = "given twice"
            elif row is None:
                out[identifier] = self._resolved.get(identifier, "unknown (never predicted)")
            elif row.claimed == "label":
                out[identifier] = "already labelled (by a batch being learned)"
            elif row.claimed:
                out[identifier] = "expired"
            seen.add(identifier)
        return out

    def due(self, now: float) -> list[str]:
        """Pending rows at least ``ttl_seconds`` old at ``now``, oldest first."""
        limit = now - self.policy.ttl_seconds
        out = []
        for identifier, row in self.pending.items():
            if row.at > limit:
                break
            if not row.claimed:
                out.append(identifier)
        return out

    def next_expiry(self) -> float | None:
        """When the oldest pending row is due (None: none pending). Safe to call from another
        thread than the one changing the table (then possibly a moment out of date)."""
        try:
            for row in self.pending.values():
                return row.at + self.policy.ttl_seconds
        except RuntimeError:  # changed while read: ask again
            return self.clock
        return None

    def summary(self) -> dict[str, Any]:
        """The served metrics, join rate, pending rows and label delays (JSON-friendly)."""
        resolved = self.labelled + self.expired + self.dropped
        recent = self.delays[: min(self.delays_seen, self.window)]
        quantiles = (
            {f"p{round(q * 100)}": float(np.quantile(recent, q)) for q in DELAY_QUANTILES}
            if recent.size
            else {f"p{round(q * 100)}": None for q in DELAY_QUANTILES}
        )
        return {
            **self.policy.to_config(),
            "pending": len(self.pending),
            "pending_bytes": self.pending_bytes,
            "labelled": self.labelled,
            "expired": self.expired,
            "dropped": self.dropped,
            "join_rate": self.labelled / resolved if resolved else None,
            "served": self.served.to_dict(),
            "delay_seconds": {"labels": recent.size, **quantiles},
        }

    # ---------------------------------------------------------------- changes
    def _entry(
        self, kind: str, at: float, ids: Sequence[str], margins: Sequence[float] = ()
    ) -> FeedbackEntry:
        self.seq += 1
        self.clock = max(self.clock, at)
        return FeedbackEntry(kind, self.seq, at, tuple(ids), tuple(float(m) for m in margins))

    def remember(
        self, ids: Sequence[str], batch: Batch, margins: np.ndarray, at: float
    ) -> FeedbackEntry:
        """Keep ``batch``'s rows under ``ids`` (none pending: see :meth:`conflicts`)."""
        for k, identifier in enumerate(ids):
            start, stop = int(batch.indptr[k]), int(batch.indptr[k + 1])
            self.pending[identifier] = PendingRow(
                at, float(margins[k]), batch.indices[start:stop].copy(),
                batch.values[start:stop].copy(),
            )  # fmt: skip
            self.pending_bytes += _row_bytes(identifier, stop - start)
            self._resolved.pop(identifier, None)
        return self._entry("remember", at, ids, margins)

    def claim(
        self, ids: Sequence[str], labels: object, weights: object | None = None, kind: str = "label"
    ) -> Batch:
        """The pending rows of ``ids`` (none refused: see :meth:`refusals`) as a batch with
        ``labels`` and ``weights``, validated as any batch (row = position in ``ids``); the rows
        are claimed until :meth:`settle` or :meth:`release`."""
        rows = [self.pending[identifier] for identifier in ids]
        sizes = [row.indices.size for row in rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(sizes, out=indptr[1:])
        empty_i, empty_v = np.empty(0, np.int64), np.empty(0, np.float64)
        batch = Batch.from_arrays(
            indptr,
            np.concatenate([row.indices for row in rows]) if rows else empty_i,
            np.concatenate([row.values for row in rows]) if rows else empty_v,
            labels, weights, dim=self.dim, require_labels=True,
        )  # fmt: skip
        for row in rows:
            row.claimed = kind
        return batch

    def release(self, ids: Sequence[str]) -> None:
        """Claimed rows not learned after all: pending again."""
        for identifier in ids:
            row = self.pending.get(identifier)
            if row is not None:
                row.claimed = None

    def expiring(self, ids: Sequence[str]) -> Batch:
        """The due rows of ``ids`` as a batch of non-clicks (claimed, as by :meth:`claim`)."""
        return self.claim(ids, np.zeros(len(ids)), kind="expire")

    def settle(self, kind: str, ids: Sequence[str], batch: Batch, at: float) -> FeedbackEntry:
        """Claimed rows learned with ``batch``'s labels (``label``: labels that arrived, in the
        served metrics; ``expire``: non-clicks by expiry): no longer pending."""
        rows = [self.pending.pop(identifier) for identifier in ids]
        for identifier, row in zip(ids, rows, strict=True):
            self.pending_bytes -= _row_bytes(identifier, row.indices.size)
            self._remember_resolved(
                identifier, "already labelled" if kind == "label" else "expired"
            )
        if kind == "label":
            self.labelled += len(rows)
            if rows:
                margins = np.array([row.margin for row in rows])
                labels = batch.labels
                assert labels is not None
                self.served.update(
                    log_losses(margins, labels), probabilities(margins), labels, batch.weights
                )
                for row in rows:
                    self.delays[self.delays_seen % self.window] = max(at - row.at, 0.0)
                    self.delays_seen += 1
        else:
            self.expired += len(rows)
        return self._entry(kind, at, ids)

    def drop(self, ids: Sequence[str], at: float) -> FeedbackEntry:
        """Forget due rows (the ``drop`` policy)."""
        for identifier in ids:
            row = self.pending.pop(identifier)
            self.pending_bytes -= _row_bytes(identifier, row.indices.size)
            self._remember_resolved(identifier, "expired")
        self.dropped += len(ids)
        return self._entry("drop", at, ids)

    def _remember_resolved(self, identifier: str, why: str) -> None:
        self._resolved[identifier] = why
        self._resolved.move_to_end(identifier)
        if len(self._resolved) > _RESOLVED_IDS:
            self._resolved.popitem(last=False)

    def replay(self, entry: FeedbackEntry, batch: Batch) -> bool:
        """Apply a logged entry whose rows (for label and expire) the caller has just learned;
        False, changing nothing, for an entry the table holds already (its sequence number)."""
        if entry.seq <= self.seq:
            return False
        if entry.seq != self.seq + 1:
            raise ValueError(f"feedback entry {entry.seq} follows {self.seq}: one is missing")
        if entry.kind == "remember":
            self.remember(entry.ids, batch, np.array(entry.margins), entry.at)
        elif entry.kind == "drop":
            missing = [i for i in entry.ids if i not in self.pending]
            if missing:
                raise ValueError(f"drops ids not pending: {missing[:5]}")
            self.drop(entry.ids, entry.at)
        else:
            missing = [i for i in entry.ids if i not in self.pending]
            if missing:
                raise ValueError(f"labels ids not pending: {missing[:5]}")
            self.settle(entry.kind, entry.ids, batch, entry.at)
        self.seq = entry.seq  # (the methods above counted it already)
        return True

    # ---------------------------------------------------------------- persistence
    def state(self) -> dict[str, np.ndarray]:
        """The arrays of a model file's feedback members (copies)."""
        ids = list(self.pending)
        rows = list(self.pending.values())
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([row.indices.size for row in rows], out=indptr[1:])
        served = {f"feedback_{k}": v for k, v in self.served.state().items()}
        return {
            "feedback_ids": np.array(ids, dtype=str),
            "feedback_times": np.array([row.at for row in rows], dtype=np.float64),
            "feedback_margins": np.array([row.margin for row in rows], dtype=np.float64),
            "feedback_indptr": indptr,
            "feedback_indices": np.concatenate(
                [r.indices for r in rows] or [np.empty(0, np.int64)]
            ),
            "feedback_values": np.concatenate([r.values for r in rows] or [np.empty(0)]),
            "feedback_counts": np.array(
                [self.seq, self.clock, self.labelled, self.expired, self.dropped, self.delays_seen],
                dtype=np.float64,
            ),
            "feedback_delays": self.delays[: min(self.delays_seen, self.window)].copy(),
            **served,
        }

    @classmethod
    def from_state(
        cls, policy: FeedbackPolicy, window: int, dim: int, arrays: Mapping[str, np.ndarray]
    ) -> Feedback:
        """The table of a model file's feedback members, as validated by
        :func:`check_feedback_state`; an empty one when the file has none."""
        feedback = cls(policy, window, dim)
        if "feedback_counts" not in arrays:
            return feedback
        counts = arrays["feedback_counts"]
        feedback.seq, feedback.clock = int(counts[0]), float(counts[1])
        feedback.labelled, feedback.expired = int(counts[2]), int(counts[3])
        feedback.dropped, feedback.delays_seen = int(counts[4]), int(counts[5])
        delays = arrays["feedback_delays"]
        feedback.delays[: len(delays)] = delays
        indptr = arrays["feedback_indptr"]
        indices = np.asarray(arrays["feedback_indices"], dtype=np.int64)
        values = np.asarray(arrays["feedback_values"], dtype=np.float64)
        for k, (identifier, at, margin) in enumerate(
            zip(
                arrays["feedback_ids"].tolist(),
                arrays["feedback_times"].tolist(),
                arrays["feedback_margins"].tolist(),
                strict=True,
            )
        ):
            start, stop = int(indptr[k]), int(indptr[k + 1])
            feedback.pending[identifier] = PendingRow(
                at, margin, indices[start:stop].copy(), values[start:stop].copy()
            )
            feedback.pending_bytes += _row_bytes(identifier, stop - start)
        served = {k.removeprefix("feedback_"): v for k, v in arrays.items() if "metrics" in k}
        feedback.served = ProgressiveMetrics.from_state(served, window)
        return feedback


def check_feedback_state(arrays: Mapping[str, np.ndarray], dim: int, window: int) -> None:
    """The invariants of a model file's feedback members (their dtypes and shapes checked):
    all of them or none; one pending row per id, time and margin, ids distinct and well formed,
    ``indptr`` from 0 to the non-zeros, non-decreasing; indices in ``[0, dim)``; finite values,
    times, margins, counters and metrics; counters that are whole non-negative numbers."""
    present = [name for name in MEMBERS if name in arrays]
    if not present:
        return
    if len(present) != len(MEMBERS):
        missing = [name for name in MEMBERS if name not in arrays]
        raise ModelFileError(f"is missing beside {present[0]}", member=missing[0])

    def refuse(member: str, why: str) -> None:
        raise ModelFileError(why, member=member)

    ids = arrays["feedback_ids"]
    n = ids.shape[0]
    for name in ("feedback_times", "feedback_margins"):
        if arrays[name].shape != (n,):
            refuse(name, f"holds {arrays[name].shape[0]} entries for {n} ids")
    indptr = arrays["feedback_indptr"]
    nnz = arrays["feedback_indices"].shape[0]
    if indptr.shape != (n + 1,):
        refuse("feedback_indptr", f"holds {indptr.shape[0]} entries for {n} ids (needs n + 1)")
    if indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any():
        refuse("feedback_indptr", f"is not a row index from 0 to {nnz}, non-decreasing")
    if arrays["feedback_values"].shape != (nnz,):
        refuse("feedback_values", f"holds {arrays['feedback_values'].shape[0]} values for {nnz}")
    indices = arrays["feedback_indices"]
    if nnz and (indices.min() < 0 or indices.max() >= dim):
        refuse("feedback_indices", f"holds an index outside [0, {dim})")
    integral = ("feedback_indptr", "feedback_indices", "feedback_metrics_rows")
    for name in MEMBERS[1:]:
        if name not in integral and not np.isfinite(arrays[name]).all():
            refuse(name, "holds non-finite values")
    listed = ids.tolist()
    try:
        check_ids(listed)
    except ConfigError as error:
        refuse("feedback_ids", f"holds a bad id at {error.row}: {error.reason}")
    if len(set(listed)) != n:
        refuse("feedback_ids", "holds an id twice")
    times = arrays["feedback_times"]
    counts = arrays["feedback_counts"]
    if counts.shape != (_COUNTS,):
        refuse("feedback_counts", f"holds {counts.shape[0]} counters, not {_COUNTS}")
    whole = np.delete(counts, 1)
    if (whole < 0).any() or (whole != np.floor(whole)).any() or (whole >= 2**53).any():
        refuse("feedback_counts", "holds a counter that is not a whole number in [0, 2**53)")
    if n and ((np.diff(times) < 0).any() or times[-1] > counts[1]):
        refuse("feedback_times", "are not in order, up to the table's clock")
    if arrays["feedback_delays"].shape[0] != min(int(counts[5]), window):
        refuse("feedback_delays", f"holds {arrays['feedback_delays'].shape[0]} delays")
    if (arrays["feedback_delays"] < 0).any():
        refuse("feedback_delays", "holds a negative delay")
    if int(arrays["feedback_metrics_rows"]) < 0:
        refuse("feedback_metrics_rows", "is negative")
    if arrays["feedback_metrics_block"][0] < 1:
        refuse("feedback_metrics_block", "holds a block of fewer than one row")
