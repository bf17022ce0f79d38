"""Fault-injection rounds against the real server: one function both the CI test
(``tests/e2e/test_fault_injection.py``, a few short rounds) and ``bench_durability.py --faults N``
(a longer run) call, so "nothing acknowledged is ever lost" is checked the same way in both.

A round, with a seed it prints (replay it with the same seed):

1. start ``python -m service serve`` on 127.0.0.1 over the same data directory and *verify*
   what the previous round left (below);
2. maybe fill the disk while it runs: the data directory is a small tmpfs (``mount``, when this
   process may) shrunk to what it holds plus a few KiB, or, where mounting is refused, the
   server's ``RLIMIT_FSIZE`` set (``prlimit``) just above its largest file (writes past it fail
   with EFBIG: CPython ignores SIGXFSZ);
3. one client thread per model name runs creates, updates, streams, imports, deletes and
   re-creates (and a delete + re-create while a stream into the old model is still sending),
   while a hypothesis thread sends bad bodies that must get a 4xx; all of it is tracked per
   model *instance* (a create starts one, a delete ends it): exactly what was acknowledged
   (200 to an update or import, a stream's summary rows), in order (one client per name, so
   the server's order is the client's);
4. ``kill -9`` at a random moment, then (server down) bytes flipped in the snapshots or logs of
   the models chosen as *damaged* for the round, or a log's tail cut.

Verification: the service starts; every model that was not damaged equals, bit for bit (every
array of the model file, the step), the serial in-process replay of exactly its acknowledged
operations (the one in flight at the kill may or may not be in: both are right; of a stream in
flight, any prefix); a damaged one is either recovered (its state then equals the replay of a
prefix of its acknowledged operations) or listed ``unavailable`` with a reason and answers 503
``model_unavailable``; no other model is listed; no request got a 500; and every log line
"never acknowledged" belongs to a model whose acknowledged rows are all there.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from harness import Server, free_port, kill9, start_server

from optim import Batch, OnlineLogisticRegression

DIM = 1024
WINDOW = 64  # recent_window: small model files, so the disk fills and snapshots rotate quickly
OPTIMIZERS = ("sgd", "adagrad", "adam", "ftrl", "rmsprop", "nadam")
MODEL_FILE = "application/x-adaserve-model"
JSON = {"Content-Type": "application/json"}
TMPFS_SIZE = 256 << 20
PAGE = 4096
# How long a round waits for its first acknowledged rows before the kill clock starts anyway:
# short when the disk is full (it may refuse every write of the round), long otherwise (a server
# compiling a kernel for a new source tree took over 5 s to acknowledge its first update).
FIRST_ACK_TIMEOUT = {"disk full": 5.0, "disk free": 120.0}
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# The server's settings for these rounds: snapshots (and new logs) every few hundred rows, so
# fallbacks to the previous snapshot and logs that span snapshots are exercised.
SERVER_ENV = {
    "ADASERVE_SNAPSHOT_EVERY_ROWS": "400",
    "ADASERVE_SNAPSHOT_EVERY_SECONDS": "1",
    "ADASERVE_WARM_KERNELS": "false",
}
NEVER_ACKNOWLEDGED = re.compile(r"model (\S+): (\S+): .* truncated \(never acknowledged\)")

Row = tuple[list[int], list[float], int]


def log(msg: str) -> None:
    print(f"[faults] {msg}", flush=True)


# ---------------------------------------------------------------- what was acknowledged


@dataclass
class Op:
    """An acknowledged (or in-flight) change of one model instance: rows learned in order, or
    a model file imported."""

    kind: str  # "rows" | "import"
    rows: list[Row] = field(default_factory=list)
    file: bytes = b""


def batch_of(rows: list[Row]) -> Batch:
    indptr, indices, values, labels = [0], [], [], []
    for cols, vals, label in rows:
        indices += cols
        values += vals
        indptr.append(len(indices))
        labels.append(label)
    return Batch.from_arrays(indptr, indices, values, labels, dim=DIM)


def apply(model: OnlineLogisticRegression, op: Op) -> OnlineLogisticRegression:
    if op.kind == "import":
        return OnlineLogisticRegression.load(io.BytesIO(op.file))
    model.learn_batch(batch_of(op.rows))
    return model


def same_state(a: OnlineLogisticRegression, b: OnlineLogisticRegression) -> bool:
    """Every array of the model file bit for bit (state, counters, metrics, config), the step."""
    fa, fb = a.file_arrays(), b.file_arrays()
    if a.step != b.step or fa.keys() != fb.keys():
        return False
    return all(
        np.asarray(fa[k]).dtype == np.asarray(fb[k]).dtype
        and np.asarray(fa[k]).tobytes() == np.asarray(fb[k]).tobytes()
        for k in fa
    )


@dataclass
class Instance:
    """One model instance (from its create to its delete) as the clients saw it."""

    name: str
    config: dict[str, Any]
    ops: list[Op] = field(default_factory=list)  # acknowledged, in order
    replay: OnlineLogisticRegression | None = None
    acked_rows: int = 0
    in_flight: Op | None = None  # at the kill: maybe applied, maybe not
    create_in_flight: bool = False
    delete_in_flight: bool = False
    damaged: list[str] = field(default_factory=list)
    quarantined: bool = False
    diverged: bool = False  # the server acknowledged a step the replay does not hold

    def __post_init__(self) -> None:
        self.replay = OnlineLogisticRegression(**self.config)

    def acknowledge(self, op: Op) -> None:
        self.ops.append(op)
        self.replay = apply(self.replay, op)
        self.acked_rows += len(op.rows)

    def fresh(self) -> OnlineLogisticRegression:
        return OnlineLogisticRegression(**self.config)

    def prefix_matching(self, served: OnlineLogisticRegression) -> int | None:
        """The longest prefix of the acknowledged operations whose replay equals ``served``."""
        model, best = self.fresh(), None
        if same_state(model, served):
            best = 0
        for i, op in enumerate(self.ops, 1):
            model = apply(model, op)
            if model.step == served.step and same_state(model, served):
                best = i
        return best


@dataclass
class Tally:
    """Counts over every round (the summary)."""

    rounds: int = 0
    faults: Counter = field(default_factory=Counter)
    ops: Counter = field(default_factory=Counter)  # acknowledged operations by kind
    acked_rows: int = 0
    rows_lost: int = 0
    rows_dropped_by_damage: int = 0
    in_flight_applied: int = 0
    in_flight_not_applied: int = 0
    damaged_recovered: int = 0
    damaged_quarantined: int = 0
    never_acknowledged_lines: int = 0
    bad_bodies: int = 0
    bad_bodies_refused: int = 0
    storage_refusals: int = 0  # 503 storage_unavailable while the disk was full
    start_seconds: list[float] = field(default_factory=list)  # Popen to /readyz 200, each start
    violations: list[str] = field(default_factory=list)

    def violate(self, message: str) -> None:
        log(f"VIOLATION: {message}")
        self.violations.append(message)

    def summary(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "faults": dict(sorted(self.faults.items())),
            "acknowledged_ops": dict(sorted(self.ops.items())),
            "acked_rows": self.acked_rows,
            "rows_lost": self.rows_lost,
            "rows_dropped_by_damage": self.rows_dropped_by_damage,
            "in_flight_applied": self.in_flight_applied,
            "in_flight_not_applied": self.in_flight_not_applied,
            "damaged_recovered": self.damaged_recovered,
            "damaged_quarantined": self.damaged_quarantined,
            "never_acknowledged_lines": self.never_acknowledged_lines,
            "bad_bodies": self.bad_bodies,
            "bad_bodies_refused": self.bad_bodies_refused,
            "storage_refusals": self.storage_refusals,
            "start_seconds": self.start_seconds,
            "violations": self.violations,
        }


# ---------------------------------------------------------------- the disk


class Disk:
    """The data directory, and a way to fill it: a tmpfs this process mounts (and shrinks to
    what it holds) when it may, else the server's RLIMIT_FSIZE."""

    def __init__(self, root: Path, use_tmpfs: bool = True) -> None:
        self.root = root
        self.kind = "fsize"
        if use_tmpfs and os.geteuid() == 0 and shutil.which("mount"):
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(root)],
                capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode == 0:
                self.kind = "tmpfs"
            else:
                log(f"no tmpfs ({done.stderr.strip()}): the full disk is RLIMIT_FSIZE")

    def _remount(self, size: int) -> bool:
        done = subprocess.run(
            ["mount", "-o", f"remount,size={size}", str(self.root)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return done.returncode == 0

    def fill(self, pid: int, headroom: int) -> str:
        """Leave ``headroom`` bytes of room for the running server ``pid``."""
        if self.kind == "tmpfs":
            # The server writes meanwhile: a size below what it holds by then is refused, so
            # measure again and retry
            for _ in range(20):
                st = os.statvfs(self.root)
                used = (st.f_blocks - st.f_bfree) * st.f_frsize
                size = max(used + headroom, PAGE)  # size=0 would be no limit at all
                if self._remount(size):
                    return f"tmpfs of {size:,} bytes ({size - used:,} free)"
                headroom *= 2
            raise RuntimeError(f"could not shrink the tmpfs at {self.root} to what it holds")
        largest = max((p.stat().st_size for p in self.root.rglob("*") if p.is_file()), default=0)
        limit = largest + headroom
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, limit))
        return f"RLIMIT_FSIZE {limit:,} bytes"

    def clear(self) -> None:
        if self.kind == "tmpfs" and not self._remount(TMPFS_SIZE):
            raise RuntimeError(f"could not grow the tmpfs at {self.root} back")

    def close(self) -> None:
        if self.kind == "tmpfs":
            subprocess.run(["umount", "-l", str(self.root)], check=False, timeout=60)


# ---------------------------------------------------------------- the server


def start_ready_server(
    data_dir: Path, log_path: Path, port: int, env: dict[str, str], timeout: float
) -> Server:
    """``adaserve serve`` (fsync always) on ``port``, returned once ``/readyz`` answers 200."""
    argv = ["-m", "service", "serve", "--data-dir", str(data_dir), "--fsync", "always"]
    server = start_server("adaserve", argv, log_path, env, port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"the server exited ({server.proc.returncode}): {server.log_text()[-3000:]}"
            )
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        time.sleep(0.05)
    kill9(server)
    raise TimeoutError(f"the server was not ready in {timeout:.0f}s: {server.log_text()[-3000:]}")


# ---------------------------------------------------------------- clients


class ServerGone(Exception):
    """The connection dropped: the server was killed (the operation is in flight)."""


@dataclass
class Slot:
    """A model name and the instance it holds (None: no model of that name)."""

    name: str
    instance: Instance | None = None


def random_rows(rng: random.Random, count: int) -> list[Row]:
    """Rows of 1..8 distinct coordinates with values k/8 (exact in any JSON reader), 0/1 labels."""
    rows = []
    for _ in range(count):
        cols = sorted(rng.sample(range(DIM), rng.randint(1, 8)))
        rows.append((cols, [rng.randint(-16, 16) / 8 for _ in cols], rng.randint(0, 1)))
    return rows


def csr_body(rows: list[Row]) -> bytes:
    indptr, indices, values = [0], [], []
    for cols, vals, _ in rows:
        indices += cols
        values += vals
        indptr.append(len(indices))
    labels = [label for _, _, label in rows]
    return orjson.dumps({"indptr": indptr, "indices": indices, "values": values, "labels": labels})


def ndjson_lines(rows: list[Row]) -> list[bytes]:
    return [
        orjson.dumps({"indices": cols, "values": vals, "label": label}) + b"\n"
        for cols, vals, label in rows
    ]


def random_config(rng: random.Random) -> dict[str, Any]:
    return {
        "optimizer": {"name": rng.choice(OPTIMIZERS)},
        "dim": DIM,
        "lazy": rng.choice(("exact", "frozen")),
        "recent_window": WINDOW,
    }


class Client:
    """One name's client: its operations run one after another, so the server applies them
    in the order they were sent."""

    def __init__(
        self,
        server: Server,
        slot: Slot,
        rng: random.Random,
        tally: Tally,
        learning: threading.Event,
        mix: dict[str, int],
    ) -> None:
        self.learning = learning  # set at the first acknowledged rows
        self.mix = mix
        self.url = server.url
        self.http = httpx.Client(base_url=server.url, timeout=TIMEOUT)
        self.slot, self.rng, self.tally = slot, rng, tally

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerGone(str(exc)) from exc
        if response.status_code >= 500 and not _refused_by_storage(response):
            self.tally.violate(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    def unexpected(self, what: str, response: httpx.Response) -> None:
        if response.status_code < 500:  # 5xx are reported by call
            self.tally.violate(f"{what}: {response.status_code} {response.text[:300]}")

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.step()
        except ServerGone:
            pass
        finally:
            self.http.close()

    def step(self) -> None:
        instance = self.slot.instance
        if instance is None:
            return self.create()
        if instance.quarantined:
            return self.delete(instance)
        operations = {
            self.update: 55, self.stream: 12, self.import_: 6, self.delete: 5, self.race: 5,
        }  # fmt: skip
        weights = [self.mix.get(op.__name__.rstrip("_"), w) for op, w in operations.items()]
        operation = self.rng.choices(list(operations), weights)[0]
        operation(instance)

    def create(self) -> None:
        instance = Instance(self.slot.name, random_config(self.rng), create_in_flight=True)
        self.slot.instance = instance
        response = self.call("POST", "/v1/models", json={"name": instance.name, **instance.config})
        instance.create_in_flight = False
        if response.status_code == 201 and response.json()["step"] == 0:
            self.tally.ops["create"] += 1
            return
        self.slot.instance = None
        if not _refused_by_storage(response):
            self.unexpected(f"create {instance.name}", response)

    def delete(self, instance: Instance) -> None:
        instance.delete_in_flight = True
        response = self.call("DELETE", f"/v1/models/{instance.name}")
        if response.status_code == 204:
            self.tally.ops["delete"] += 1
            self.slot.instance = None
            return
        instance.delete_in_flight = False
        if not _refused_by_storage(response):
            self.unexpected(f"delete {instance.name}", response)

    def update(self, instance: Instance) -> None:
        op = Op("rows", random_rows(self.rng, self.rng.randint(1, 40)))
        instance.in_flight = op
        path = f"/v1/models/{instance.name}/updates"
        response = self.call("POST", path, content=csr_body(op.rows), headers=JSON)
        instance.in_flight = None
        if response.status_code == 200:
            instance.acknowledge(op)
            self.tally.ops["update"] += 1
            self.learning.set()
            self.tally.acked_rows += len(op.rows)
            if response.json()["step"] != instance.replay.step and not instance.diverged:
                instance.diverged = True  # reported once: what follows is its consequence
                self.tally.violate(f"{path}: step {response.json()['step']} acknowledged, the "
                                   f"replay of the acknowledged operations at "
                                   f"{instance.replay.step}")  # fmt: skip
        elif not self.storage_refused(response):
            self.unexpected(path, response)

    def storage_refused(self, response: httpx.Response) -> bool:
        if _refused_by_storage(response):
            self.tally.storage_refusals += 1
            return True
        return False

    def stream(self, instance: Instance) -> None:
        op = Op("rows", random_rows(self.rng, self.rng.randint(1, 300)))
        instance.in_flight = op
        path = f"/v1/models/{instance.name}/stream"
        headers = {"Content-Type": "application/x-ndjson"}
        response = self.call("POST", path, content=b"".join(ndjson_lines(op.rows)), headers=headers)
        instance.in_flight = None
        learned = self.stream_summary(path, response, len(op.rows))
        if learned is not None:
            instance.acknowledge(Op("rows", op.rows[:learned]))
            self.tally.ops["stream"] += 1
            self.learning.set()
            self.tally.acked_rows += learned

    def stream_summary(self, path: str, response: httpx.Response, sent: int) -> int | None:
        """Rows the stream's summary acknowledges (None: not a summary)."""
        if response.status_code != 200:
            self.unexpected(path, response)
            return None
        lines = response.content.splitlines()
        summary = orjson.loads(lines[-1]) if lines else {}
        if not summary.get("done"):  # the connection ended without a summary
            raise ServerGone(f"{path}: no summary line")
        error = summary.get("error")
        if error is None and summary["rows"] != sent:
            self.tally.violate(f"{path}: {summary['rows']} of {sent} rows and no error")
        if error is not None and error.get("code") != "storage_unavailable":
            self.tally.violate(f"{path}: stream error {error}")
        elif error is not None:
            self.tally.storage_refusals += 1
        return int(summary["rows"])

    def import_(self, instance: Instance) -> None:
        # A state ahead of the served one, or one of a lower step than the snapshots on disk
        # (a fresh model's): the import supersedes them all.
        model = _copy(instance.replay) if self.rng.random() < 0.5 else instance.fresh()
        for _ in range(self.rng.randint(1, 3)):
            model.learn_batch(batch_of(random_rows(self.rng, self.rng.randint(1, 30))))
        op = Op("import", file=model.to_bytes())
        instance.in_flight = op
        path = f"/v1/models/{instance.name}/import"
        response = self.call("POST", path, content=op.file, headers={"Content-Type": MODEL_FILE})
        instance.in_flight = None
        if response.status_code == 200 and response.json()["step"] == model.step:
            instance.acknowledge(op)
            self.tally.ops["import"] += 1
        elif not self.storage_refused(response):
            self.unexpected(path, response)

    def race(self, old: Instance) -> None:
        """Delete and re-create the model while a stream into it is still sending. Once the
        server has learned the stream's first half into the old instance, the rest may never
        reach the new one: the stream ends with a summary saying the model was deleted. (A
        stream the server took only after the re-create is the new instance's, rightly.)"""
        rows = random_rows(self.rng, self.rng.randint(20, 120))
        lines = ndjson_lines(rows)
        half = len(lines) // 2
        deleted = threading.Event()
        old.in_flight = Op("rows", rows)  # until the delete is acknowledged: any prefix

        def body() -> Any:
            yield b"".join(lines[:half])
            deleted.wait(10)
            yield b"".join(lines[half:])

        outcome: list[httpx.Response | Exception] = []

        def send() -> None:
            try:
                with httpx.Client(base_url=self.url, timeout=TIMEOUT) as http:
                    outcome.append(http.post(
                        f"/v1/models/{old.name}/stream", content=body(),
                        headers={"Content-Type": "application/x-ndjson"},
                    ))  # fmt: skip
            except httpx.TransportError as exc:
                outcome.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        new = None
        try:
            resolved_to_old = self.wait_for_step(old, old.replay.step + half)
            self.delete(old)
            if self.slot.instance is None:
                old.in_flight = None
                self.create()
                new = self.slot.instance
                if new is not None:  # the stream may be the new instance's (taken after this)
                    new.in_flight = Op("rows", rows)
        finally:
            deleted.set()
            sender.join(60)
        if not outcome or isinstance(outcome[0], Exception):
            raise ServerGone("the racing stream's connection dropped")
        self.tally.ops["race"] += 1
        if new is not None:
            new.in_flight = None
        response = outcome[0]
        if response.status_code in (404, 409):  # taken between the delete and the re-create
            return
        if response.status_code != 200:
            return self.unexpected("a stream cut by a delete", response)
        answer = response.content.splitlines()
        summary = orjson.loads(answer[-1]) if answer else {}
        code = (summary.get("error") or {}).get("code")
        if not summary.get("done"):
            self.tally.violate(f"a stream cut by a delete ended without a summary: {answer}")
        elif code == "model_deleted" and self.slot.instance is not old:
            return  # the old instance's rows, gone with it
        elif resolved_to_old and self.slot.instance is not old and not old.diverged:
            self.tally.violate(f"a stream into a deleted model ended with {summary}")
        elif code in (None, "storage_unavailable") and self.slot.instance is not None:
            learned = int(summary["rows"])  # the instance the name now holds took it
            self.slot.instance.acknowledge(Op("rows", rows[:learned]))
            self.tally.acked_rows += learned
        else:
            self.tally.violate(f"a stream cut by a delete ended with {summary}")

    def wait_for_step(self, instance: Instance, step: int) -> bool:
        """Poll until the server holds ``step`` rows of the model (at most 5 s)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            answer = self.call("GET", f"/v1/models/{instance.name}")
            if answer.status_code == 200 and answer.json()["step"] >= step:
                return True
            time.sleep(0.01)
        return False


def _refused_by_storage(response: httpx.Response) -> bool:
    if response.status_code != 503:
        return False
    with contextlib.suppress(ValueError):
        return response.json().get("error") == "storage_unavailable"
    return False


# ---------------------------------------------------------------- bad input (hypothesis)


def bad_bodies() -> Any:
    """Strategy: (Content-Type, body) pairs an update must refuse with a 4xx, changing nothing."""
    from hypothesis import strategies as st

    index = st.integers(0, DIM - 1)
    value = st.integers(-16, 16).map(lambda k: k / 8)
    row = st.lists(st.tuples(index, value), min_size=1, max_size=5, unique_by=lambda t: t[0])
    rows = st.lists(st.tuples(row, st.integers(0, 1)), min_size=1, max_size=5)

    def csr(rs: list) -> dict[str, list]:
        return orjson.loads(csr_body([([c for c, _ in r], [v for _, v in r], y) for r, y in rs]))

    def index_outside(body: dict, where: int, by: int) -> dict:
        body["indices"][where % len(body["indices"])] = DIM + by if by >= 0 else by
        return body

    def shorter(body: dict, key: str) -> dict:
        body[key] = body[key][:-1]
        return body

    def label(body: dict, y: int) -> dict:
        body["labels"][0] = y
        return body

    def descending(body: dict) -> dict:
        body["indptr"] = list(reversed(body["indptr"]))
        body["indptr"][0] = body["indptr"][-1] + 1 if len(body["indptr"]) > 1 else 1
        return body

    json_bodies = st.one_of(
        st.builds(index_outside, rows.map(csr), st.integers(0, 99),
                  st.integers(-(2**62), 2**62).filter(lambda b: b != -1)),
        st.builds(shorter, rows.map(csr), st.sampled_from(["values", "indices", "labels"])),
        st.builds(label, rows.map(csr), st.sampled_from([2, -1, 3, 0.5, "1", None, 1e308])),
        rows.map(csr).map(descending),
        st.builds(lambda body, key: {**body, key: 1}, rows.map(csr), st.text(min_size=1, max_size=8)
                  .filter(lambda k: k not in ("indptr", "indices", "values", "labels", "weights",
                                              "rows"))),
    )  # fmt: skip
    not_finite = rows.map(csr).map(
        lambda body: orjson.dumps(body).replace(b'"values":[', b'"values":[NaN,', 1)
    )
    return st.one_of(
        json_bodies.map(lambda body: ("application/json", orjson.dumps(body))),
        not_finite.map(lambda body: ("application/json", body)),
        st.binary(max_size=64).map(lambda b: ("application/json", b"{" + b)),
        # a valid body as a web page could send it without a CORS preflight: 415
        rows.map(csr).map(lambda body: ("text/plain", orjson.dumps(body))),
    )


def send_bad_input(
    server: Server, names: list[str], examples: int, seed: int, tally: Tally, dead: threading.Event
) -> None:
    """``examples`` bad bodies (hypothesis, seeded) to the models' ``/updates``: each a 4xx."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    http = httpx.Client(base_url=server.url, timeout=TIMEOUT)

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(st.sampled_from(names), bad_bodies())
    def send(name: str, case: tuple[str, bytes]) -> None:
        if dead.is_set():
            return
        content_type, body = case
        path = f"/v1/models/{name}/updates"
        try:
            response = http.post(path, content=body, headers={"Content-Type": content_type})
        except httpx.TransportError:
            dead.set()
            return
        tally.bad_bodies += 1
        if 400 <= response.status_code < 500:
            tally.bad_bodies_refused += 1
        else:
            tally.violate(f"bad body {body[:200]!r} ({content_type}) to {path}: "
                          f"{response.status_code} {response.text[:200]}")  # fmt: skip

    try:
        send()
    finally:
        http.close()


# ---------------------------------------------------------------- damage (server down)


def damage(model_dir: Path, rng: random.Random) -> str | None:
    """Flip a byte of a snapshot or log, or cut a log's tail; the kind of damage done."""
    logs = sorted(
        (p for p in model_dir.glob("wal-*.log") if p.stat().st_size),
        key=lambda p: int(p.stem[4:]),
    )
    snapshots = sorted(model_dir.glob("snapshot-*.npz"), key=lambda p: int(p.stem[9:]))
    kinds = [k for k, ok in (("flip-log-tail", logs), ("cut-log-tail", logs), ("flip-log", logs),
                             ("flip-snapshot", snapshots)) if ok]  # fmt: skip
    if not kinds:
        return None
    kind = rng.choice(kinds)
    if kind == "cut-log-tail":
        path = logs[-1]
        os.truncate(path, max(0, path.stat().st_size - rng.randint(1, 24)))
        return kind
    if kind == "flip-snapshot":
        path = snapshots[-1] if rng.random() < 0.6 else rng.choice(snapshots)
        offset = rng.randrange(path.stat().st_size)
    elif kind == "flip-log-tail":
        path = logs[-1]
        size = path.stat().st_size
        offset = rng.randrange(max(0, size - 48), size)
    else:
        path = rng.choice(logs)
        offset = rng.randrange(path.stat().st_size)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ rng.randint(1, 255)]))
    return kind


# ---------------------------------------------------------------- verification


def verify(server: Server, slots: list[Slot], tally: Tally) -> None:
    """What the restarted server holds against what was acknowledged (see the module doc)."""
    http = httpx.Client(base_url=server.url, timeout=TIMEOUT)
    listing = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    reported = Counter(
        m.group(1) for m in NEVER_ACKNOWLEDGED.finditer(server.log_text())
    )  # torn tails dropped at this start
    tally.never_acknowledged_lines += sum(reported.values())
    for slot in slots:
        instance = slot.instance
        entry = listing.pop(slot.name, None)
        if instance is None:
            if entry is not None:
                tally.violate(f"{slot.name} is served but no create was sent: {entry}")
            continue
        if entry is None:
            if not (instance.create_in_flight or instance.delete_in_flight):
                tally.violate(f"{slot.name} disappeared ({instance.acked_rows} acked rows)")
                tally.rows_lost += instance.acked_rows
            slot.instance = None
            continue
        instance.create_in_flight = instance.delete_in_flight = False
        if entry["status"] == "unavailable":
            check_quarantined(http, instance, entry, tally)
        else:
            served = OnlineLogisticRegression.load(
                io.BytesIO(http.get(f"/v1/models/{slot.name}/export").content)
            )
            damaged = bool(instance.damaged)
            lost = check_state(instance, served, tally)
            if lost and reported[slot.name] and not damaged:
                tally.violate(f"{slot.name}: acknowledged rows dropped as 'never acknowledged'")
        instance.in_flight, instance.damaged, instance.diverged = None, [], False
    for name, entry in listing.items():
        tally.violate(f"an unknown model is served: {name} {entry}")
    http.close()


def check_quarantined(http: httpx.Client, instance: Instance, entry: dict, tally: Tally) -> None:
    answer = http.get(f"/v1/models/{instance.name}")
    code = answer.json().get("error") if answer.status_code == 503 else None
    if not entry.get("reason") or code != "model_unavailable":
        tally.violate(f"{instance.name} unavailable without its reason or 503: {entry} {answer}")
    if instance.damaged and not instance.quarantined:
        tally.damaged_quarantined += 1
        tally.rows_dropped_by_damage += instance.acked_rows
    elif not instance.damaged and not instance.quarantined:
        tally.violate(f"{instance.name} was not damaged but is unavailable: {entry['reason']}")
        tally.rows_lost += instance.acked_rows
    instance.quarantined = True


def check_state(instance: Instance, served: OnlineLogisticRegression, tally: Tally) -> int:
    """Compare; carry on from what the server holds. The acknowledged rows it lacks (0 when
    right), counted as lost unless the model was damaged on purpose."""
    replay, op = instance.replay, instance.in_flight
    if same_state(replay, served):
        if op is not None:
            tally.in_flight_not_applied += 1
        if instance.damaged:
            tally.damaged_recovered += 1
        return 0
    if op is not None:
        candidate = None
        if op.kind == "import":
            candidate = op
        elif 0 < served.step - replay.step <= len(op.rows):  # a stream: any prefix
            candidate = Op("rows", op.rows[: served.step - replay.step])
        if candidate is not None and same_state(apply(_copy(replay), candidate), served):
            instance.acknowledge(candidate)
            tally.in_flight_applied += 1
            if instance.damaged:
                tally.damaged_recovered += 1
            return 0
    prefix = instance.prefix_matching(served)
    lost = (
        sum(len(o.rows) for o in instance.ops[prefix:]) if prefix is not None
        else instance.acked_rows
    )  # fmt: skip
    if instance.damaged and prefix is not None:
        tally.damaged_recovered += 1
        tally.rows_dropped_by_damage += lost
    elif instance.damaged:
        tally.violate(
            f"{instance.name} (damaged: {instance.damaged}) came back in a state no "
            f"prefix of its acknowledged operations explains (step {served.step})"
        )
        tally.rows_dropped_by_damage += lost
    else:
        where = f"the first {prefix} of {len(instance.ops)}" if prefix is not None else "none"
        tally.violate(f"{instance.name} (not damaged) differs from the replay of its acknowledged "
                      f"operations: step {served.step}, replay {replay.step}; it matches {where}; "
                      f"{lost} acknowledged rows lost")  # fmt: skip
        tally.rows_lost += lost
    # Carry on from the server's state (as if imported), so one finding is reported once.
    instance.ops = [Op("import", file=served.to_bytes())]
    instance.replay = _copy(served)
    return lost


def _copy(model: OnlineLogisticRegression) -> OnlineLogisticRegression:
    return OnlineLogisticRegression.load(io.BytesIO(model.to_bytes()))


# ---------------------------------------------------------------- rounds


@dataclass
class Plan:
    """How hard the rounds push (the CI test: a few short rounds; the benchmark: more)."""

    rounds: int = 4
    names: int = 3
    kill_after: tuple[float, float] = (0.0, 1.5)  # seconds after the first ack: kill -9
    damage_chance: float = 0.3  # per model and round
    full_disk_chance: float = 0.35  # per round
    bad_bodies: int = 6  # per round
    ready_timeout: float = 120.0
    use_tmpfs: bool = True
    # Weights of the operations that override the defaults (update 55, stream 12, import 6,
    # delete 5, race 5), e.g. {"race": 0} to leave one out while narrowing a finding down.
    mix: dict[str, int] = field(default_factory=dict)
    full_disk_mix: dict[str, int] = field(
        default_factory=dict
    )  # over ``mix`` when the disk is full


def run(work: Path, seed: int, plan: Plan, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The rounds of ``plan`` under ``work`` (data in ``work/data``, server logs in
    ``work/logs``); the summary (``violations`` empty when everything held)."""
    log(f"seed {seed} (replay: the same seed), {plan.rounds} rounds, {plan.names} models")
    data, logs = work / "data", work / "logs"
    data.mkdir(parents=True, exist_ok=True)
    logs.mkdir(exist_ok=True)
    env = {**os.environ, **SERVER_ENV, **(env or {})}
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([repo, *filter(None, [env.get("PYTHONPATH")])])
    disk = Disk(data, plan.use_tmpfs)
    slots = [Slot(f"m{i}") for i in range(plan.names)]
    tally = Tally()
    server: Server | None = None
    t0 = time.monotonic()
    try:
        for r in range(plan.rounds + 1):  # the last start only verifies
            rng = random.Random(f"{seed}/{r}")
            started = time.monotonic()
            server = start_ready_server(
                data, logs / f"round-{r}.log", free_port(), env, plan.ready_timeout
            )
            tally.start_seconds.append(time.monotonic() - started)
            verify(server, slots, tally)
            if r == plan.rounds:
                break
            tally.rounds += 1
            log(f"round {r + 1}: started in {tally.start_seconds[-1]:.1f}s, verified "
                f"({time.monotonic() - t0:.1f}s into the run)")  # fmt: skip
            traffic(server, slots, rng, plan, disk, tally, seed * 1000 + r)
            kill9(server)
            if "Exception in ASGI application" in server.log_text():
                tally.violate(f"{server.log_path} holds an unhandled exception (a 500)")
            disk.clear()
            for slot in slots:
                instance = slot.instance
                if instance is None or rng.random() >= plan.damage_chance:
                    continue
                kind = damage(data / "models" / slot.name, rng) if (
                    data / "models" / slot.name).is_dir() else None  # fmt: skip
                if kind is not None:
                    instance.damaged.append(kind)
                    tally.faults[kind] += 1
        server.proc.send_signal(signal.SIGTERM)  # a graceful stop after all that exits 0
        if server.proc.wait(60) != 0:
            tally.violate(f"the final graceful stop exited {server.proc.returncode}")
    finally:
        if server is not None:
            kill9(server)
        disk.close()
    summary = {"seed": seed, "disk": disk.kind, "seconds": time.monotonic() - t0,
               **tally.summary()}  # fmt: skip
    log(
        f"seed {seed}: {summary['rounds']} rounds, faults {summary['faults']}, acknowledged "
        f"ops {summary['acknowledged_ops']}, acknowledged rows {summary['acked_rows']:,}, rows "
        f"lost {summary['rows_lost']}, rows dropped by deliberate damage "
        f"{summary['rows_dropped_by_damage']}, damaged recovered/quarantined "
        f"{summary['damaged_recovered']}/{summary['damaged_quarantined']}, bad bodies refused "
        f"{summary['bad_bodies_refused']}/{summary['bad_bodies']}, violations "
        f"{len(summary['violations'])}"
    )
    return summary


def traffic(
    server: Server, slots: list[Slot], rng: random.Random, plan: Plan, disk: Disk, tally: Tally,
    hypothesis_seed: int,
) -> None:  # fmt: skip
    """Clients on every name and bad input until a kill -9 at a random moment."""
    tally.faults["kill -9"] += 1
    mix, disk_state = plan.mix, "disk free"
    if rng.random() < plan.full_disk_chance:
        mix, disk_state = {**plan.mix, **plan.full_disk_mix}, "disk full"
        tally.faults["full disk"] += 1
        log(f"disk full: {disk.fill(server.proc.pid, rng.choice([8192, 32768, 131072]))}")
    stop, dead, learning = threading.Event(), threading.Event(), threading.Event()
    clients = [Client(server, s, random.Random(rng.random()), tally, learning, mix) for s in slots]
    threads = [threading.Thread(target=c.run, args=(stop,), daemon=True) for c in clients]
    threads.append(threading.Thread(
        target=send_bad_input,
        args=(server, [s.name for s in slots], plan.bad_bodies, hypothesis_seed, tally, dead),
        daemon=True,
    ))  # fmt: skip
    for thread in threads:
        thread.start()
    # The clock starts at the first acknowledged rows: a server still loading its kernels
    # (the warm-up is off) is not killed before it learned anything.
    learning.wait(FIRST_ACK_TIMEOUT[disk_state])
    time.sleep(rng.uniform(*plan.kill_after))
    kill9(server)
    stop.set()
    dead.set()
    for thread in threads:
        thread.join(120)
        if thread.is_alive():
            tally.violate("a client did not end within 120 s of the kill")
