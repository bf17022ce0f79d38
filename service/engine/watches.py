"""Watched features: a few coordinates of a model whose weight, effective learning rate, state
and times touched are recorded as it learns, for curves over rows (the dashboard's "watched
features", ``/v1/models/{name}/watches``).

When a sample is taken: at the end of a group of batches the model's writer learned together
(one call of the compiled loop, :meth:`~service.engine.model.ManagedModel._learn_group`), when
the model's step has reached a multiple of ``every`` rows not sampled yet. So samples are never
closer than ``every`` rows, and one lands at the first group boundary at or after each multiple
of ``every`` (a group that spans several multiples gives one sample, at its end). A stream
learns batches of ``stream_batch_rows`` (10,000) rows: with ``every`` below that, a sample per
batch. Nothing is recorded per row, and the compiled loop is not involved; a sample costs one
compiled inspection of the watched coordinates (a few microseconds) and one small write.

Files, in the model's directory beside its snapshots and log (:mod:`service.storage`)::

    watches.json   the watch list and ``every``, replaced atomically (fsync, rename, fsync of the
                   directory) before a change is acknowledged
    watches.log    the samples, each a record ``length (u32) | crc32 (u32) | JSON`` as the
                   write-ahead log frames its records; appended with one write(2) before the
                   group is acknowledged, so a sample survives the process being killed (kill
                   -9); it is not fsynced: after a power failure the newest samples may be
                   missing (never wrong: a torn record is dropped)

The samples kept are a bounded ring (``capacity`` samples, the oldest dropped); the log is
rewritten from the ring (atomically) when loaded and when it holds twice the ring's capacity.
Loading drops the samples of steps beyond the recovered model's (learned but never logged, so
the model does not hold them); a rollback after a refused log write does the same, and an
import clears them (they describe a history the imported state does not have).

A removed watch's samples stay in the ring until they age out: watching it again shows them.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import struct
import threading
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optim import OnlineLogisticRegression
from service.engine.errors import StorageUnavailable, TooManyWatches, WatchNotFound
from service.storage import write_atomically

log = logging.getLogger("adaserve")

LIST_FILE = "watches.json"
SAMPLES_FILE = "watches.log"
_FRAME = struct.Struct("<II")  # payload length, crc32 of the payload (as the WAL's records)


@dataclass(frozen=True)
class Watch:
    """A watched coordinate and the feature name it was asked by (or that the model knows)."""

    index: int
    feature: str | None


@dataclass(frozen=True)
class Sample:
    """The watched coordinates at one step: ``coordinates`` holds, per index, its weight,
    effective learning rate, times touched and state slots (caught up to ``step``)."""

    step: int
    coordinates: dict[int, tuple[float, float, int, tuple[float, ...]]]

    def encode(self) -> bytes:
        rows = [[i, w, r, t, list(s)] for i, (w, r, t, s) in self.coordinates.items()]
        payload = json.dumps({"step": self.step, "coordinates": rows}).encode()
        return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload

    @classmethod
    def decode(cls, payload: bytes) -> Sample:
        data = json.loads(payload)
        coordinates = {
            int(i): (float(w), float(r), int(t), tuple(map(float, s)))
            for i, w, r, t, s in data["coordinates"]
        }
        return cls(int(data["step"]), coordinates)


def read_samples(data: bytes) -> tuple[list[Sample], int]:
    """The samples a log holds, up to the first record that is torn or does not decode, and the
    byte offset where that one starts (the log's length when every record is whole)."""
    samples, offset = [], 0
    while offset + _FRAME.size <= len(data):
        length, checksum = _FRAME.unpack_from(data, offset)
        payload = data[offset + _FRAME.size : offset + _FRAME.size + length]
        if len(payload) < length or zlib.crc32(payload) != checksum:
            break
        try:
            samples.append(Sample.decode(payload))
        except (ValueError, KeyError, TypeError):
            break
        offset += _FRAME.size + length
    return samples, offset


class Watches:
    """One model's watched coordinates and the ring of their samples, kept in ``directory``.

    Changed only by the model's writer (under its state lock, see
    :class:`~service.engine.model.ManagedModel`); read by any thread (:meth:`curves`).
    """

    def __init__(
        self, name: str, directory: Path, *, limit: int, capacity: int, every: int
    ) -> None:
        self.name, self.directory = name, directory
        self.limit, self.capacity, self.every = limit, capacity, every
        self.watches: list[Watch] = []
        self.samples: deque[Sample] = deque(maxlen=capacity)
        # Why the newest samples are not on disk (a write failed), None while they all are.
        self.problem: str | None = None
        self._logged = 0  # records in watches.log
        self._lock = threading.Lock()  # readers' view of watches and samples

    # ------------------------------------------------------------------ files
    def load(self, model_step: int) -> None:
        """Read the list and the samples kept (at start-up), dropping samples beyond
        ``model_step``; the log is rewritten with what is kept. A list that does not read
        (written atomically by this module, so only a foreign hand makes one) is logged as an
        error and the model starts without watches: they never keep a model from serving."""
        path = self.directory / LIST_FILE
        if not path.exists():
            return
        try:
            saved = json.loads(path.read_bytes())
            every = int(saved["every"])
            watches = [Watch(int(w["index"]), w["feature"]) for w in saved["watches"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("model %s: %s unreadable (%s); no watches", self.name, LIST_FILE, exc)
            return
        self.every, self.watches = every, watches
        log_path = self.directory / SAMPLES_FILE
        samples, valid = read_samples(log_path.read_bytes()) if log_path.exists() else ([], 0)
        if log_path.exists() and valid < log_path.stat().st_size:
            log.warning("model %s: %s torn at byte %d; dropped", self.name, SAMPLES_FILE, valid)
        self.samples.extend(sample for sample in samples if sample.step <= model_step)
        self._rewrite_log()

    def _save_list(self, watches: list[Watch], every: int) -> None:
        listed = [{"index": w.index, "feature": w.feature} for w in watches]
        body = {"every": every, "watches": listed}
        try:
            write_atomically(self.directory / LIST_FILE, json.dumps(body).encode())
        except OSError as exc:
            raise StorageUnavailable(self.name, f"the watch list was not saved: {exc}") from None

    def _append(self, sample: Sample) -> None:
        if self._logged >= 2 * self.capacity:
            self._rewrite_log()
            return
        try:
            descriptor = os.open(
                self.directory / SAMPLES_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
            try:
                record = sample.encode()
                if os.write(descriptor, record) != len(record):
                    raise OSError(errno.ENOSPC, "short write")
            finally:
                os.close(descriptor)
        except OSError as exc:
            self._unsaved(exc)
            return
        self._logged += 1

    def _rewrite_log(self) -> None:
        data = b"".join(sample.encode() for sample in self.samples)
        try:
            write_atomically(self.directory / SAMPLES_FILE, data)
        except OSError as exc:
            self._unsaved(exc)
            return
        self._logged, self.problem = len(self.samples), None

    def _unsaved(self, exc: OSError) -> None:
        # Samples describe learning, they are not what was learned: a full disk must not
        # refuse batches for them. Kept in memory; the next rewrite tries to save them again.
        self.problem = f"the newest samples are not saved: {exc}"
        self._logged = 2 * self.capacity  # the next sample rewrites the whole log
        log.warning("model %s: %s", self.name, self.problem)

    # ------------------------------------------------------------------ changes (the writer)
    def add(self, model: OnlineLogisticRegression, index: int | None, feature: str | None) -> Watch:
        """Watch a coordinate by index or by feature name (hashed as the model hashes named
        rows); saved before it returns, and sampled at once. Watching it again changes
        nothing; :class:`TooManyWatches` beyond the limit."""
        if feature is not None:
            index = model.feature_index(feature)
        else:
            model.inspect_coordinates([index])  # BatchError naming the index's range
            feature = model.feature_names.get(index)
        assert index is not None
        existing = next((w for w in self.watches if w.index == index), None)
        if existing is not None:
            return existing
        if len(self.watches) >= self.limit:
            raise TooManyWatches(self.name, self.limit)
        watch = Watch(index, feature)
        self._save_list([*self.watches, watch], self.every)
        with self._lock:
            self.watches.append(watch)
        self.sample(model)
        return watch

    def remove(self, index: int) -> None:
        """Stop watching ``index`` (:class:`WatchNotFound` if it is not watched)."""
        kept = [w for w in self.watches if w.index != index]
        if len(kept) == len(self.watches):
            raise WatchNotFound(self.name, index)
        self._save_list(kept, self.every)
        with self._lock:
            self.watches = kept

    def set_every(self, every: int) -> None:
        self._save_list(self.watches, every)
        self.every = every

    def after_learning(self, model: OnlineLogisticRegression) -> None:
        """A sample if the model's step reached a multiple of ``every`` not sampled yet."""
        if not self.watches:
            return
        last = self.samples[-1].step if self.samples else -1
        if model.step // self.every > last // self.every:
            self.sample(model)

    def sample(self, model: OnlineLogisticRegression) -> None:
        """Record the watched coordinates now (replacing a sample of the same step)."""
        if not self.watches:
            return
        coordinates = model.inspect_coordinates([w.index for w in self.watches])
        sample = Sample(
            model.step,
            {
                c["index"]: (
                    c["weight"], c["effective_learning_rate"], c["times_touched"],
                    tuple(c["state"].values()),
                )
                for c in coordinates
            },
        )  # fmt: skip
        with self._lock:
            if self.samples and self.samples[-1].step == sample.step:
                self.samples.pop()
                self.samples.append(sample)
                replaced = True
            else:
                self.samples.append(sample)
                replaced = False
        if replaced:
            self._rewrite_log()
        else:
            self._append(sample)

    def forget_after(self, step: int) -> None:
        """Drop the samples beyond ``step`` (the model was rolled back to it)."""
        with self._lock:
            kept = [sample for sample in self.samples if sample.step <= step]
            if len(kept) == len(self.samples):
                return
            self.samples = deque(kept, maxlen=self.capacity)
        self._rewrite_log()

    def clear(self, model: OnlineLogisticRegression) -> None:
        """A new history (an import): every sample dropped, one taken of the new state."""
        with self._lock:
            self.samples = deque(maxlen=self.capacity)
        self._rewrite_log()
        self.sample(model)

    # ------------------------------------------------------------------ reading
    def listing(self) -> dict[str, Any]:
        with self._lock:
            watches = [{"index": w.index, "feature": w.feature} for w in self.watches]
        return {
            "model": self.name, "every": self.every, "limit": self.limit,
            "capacity": self.capacity, "watches": watches,
        }  # fmt: skip

    def curves(self, slots: tuple[str, ...], since_step: int = -1) -> dict[str, Any]:
        """Each watched coordinate's samples as series over the model's rows (steps)."""
        with self._lock:
            watches, samples = list(self.watches), list(self.samples)
        series = []
        for watch in watches:
            taken = [
                (s.step, s.coordinates[watch.index])
                for s in samples
                if s.step > since_step and watch.index in s.coordinates
            ]
            series.append(
                {
                    "index": watch.index,
                    "feature": watch.feature,
                    "steps": [step for step, _ in taken],
                    "weight": [c[0] for _, c in taken],
                    "effective_learning_rate": [c[1] for _, c in taken],
                    "times_touched": [c[2] for _, c in taken],
                    "state": {slot: [c[3][q] for _, c in taken] for q, slot in enumerate(slots)},
                }
            )
        return {**self.listing(), "saved": self.problem is None, "problem": self.problem,
                "curves": series}  # fmt: skip
