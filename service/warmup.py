"""Compiling the server's numba code, what the first requests need first.

On a fresh install nothing is in numba's cache and compiling everything takes a minute or more
on two cores (the JSON readers alone ~20-30 s, each optimizer's loops ~2-4 s). A server is ready
(``/readyz`` 200) once the pieces marked ``needed`` are warm: the learn loops of the optimizers
of the models on disk, then AdaGrad's, and the path of a small JSON update (reading the body into
a batch, hashing named rows, its log record's checksum). Next come their read loops
(predictions, rate lookups), then the loops of ``"auto"``, the optimizer of a model created with
none (its members' update forms and its driver: 13-16 s more cold, not waited for by ``/readyz``,
so a new AdaGrad model learns and answers meanwhile), then the other pieces (the text parsers, the
other optimizers, the JSON reader, the one-call predict of each optimizer) in the same background
thread.

A request needing a piece still compiling waits for it rather than failing: numba compiles a
function under one process-wide lock and looks for a compiled version again once it holds it,
and :func:`optim.kernels.kernels_for` loads each optimizer's module once. With a warm cache
every piece loads in milliseconds. ``adaserve warm`` compiles everything ahead (Docker images
run it at build time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from optim import REGISTRY, Batch, OnlineLogisticRegression, PortfolioLogisticRegression

log = logging.getLogger("adaserve")
# The single-model optimizer warmed first (the in-process class's default, the members of
# "auto" use it too) and the one the small-update path runs.
FIRST_OPTIMIZER = "adagrad"
JSON_READER = "json-reader"
# One valid Criteo line: label, 13 integer and 26 categorical columns.
CRITEO_LINE = b"\t".join([b"1", *[b"1"] * 13, *[b"a"] * 26]) + b"\n"
NDJSON_LINE = b'{"indices": [0], "values": [1], "label": 1}\n'
SMALL_CSR_BODY = b'{"indptr": [0, 1], "indices": [0], "values": [0.5], "labels": [1]}'
SMALL_ROWS_BODY = b'{"rows": [{"features": {"IQ": 1.5, "city": "paris"}, "label": 0}]}'


@dataclass(frozen=True)
class Piece:
    """One unit of compilation: ``name`` in logs and ``/readyz``; ``needed`` for readiness."""

    name: str
    compile: Callable[[], None]
    needed: bool = False


def _tiny_batch() -> Batch:
    return Batch.from_arrays(np.array([0, 1]), np.array([0]), np.array([1.0]), [1], dim=2)


def learn_loop(optimizer: str) -> None:
    """An optimizer's learn loop (and, for the first, the batch code and progressive metrics it
    calls): what an update needs."""
    OnlineLogisticRegression(optimizer, dim=2).learn_batch(_tiny_batch())


def portfolio_loop() -> None:
    """``"optimizer": "auto"``: its members' loops in their update forms (normalized,
    invariant: each form is its own compiled module) and the portfolio's driver."""
    PortfolioLogisticRegression(dim=2).learn_batch(_tiny_batch())


def read_loops(optimizer: str) -> None:
    """An optimizer's margins and inspect loops: predictions of a batch, rate lookups."""
    model = OnlineLogisticRegression(optimizer, dim=2)
    model.decision_function(_tiny_batch())
    model.inspect_coordinates([0])


def one_call_predict(optimizer: str) -> None:
    """An optimizer's predict of a small CSR body in one compiled call (JSON reader inlined)."""
    from optim.formats.json_csr import scores_of_json

    scores_of_json(
        OnlineLogisticRegression(optimizer, dim=2), SMALL_CSR_BODY, max_rows=10, max_nnz=10
    )


def small_update_path() -> None:
    """What a small ``POST .../updates`` runs besides the optimizer's loop: the body (CSR and
    named rows, hashed) into a batch, and its log record with the checksum."""
    from service.batches import batch_from_body
    from service.settings import Settings
    from service.storage import encode_batch, record_body

    model = OnlineLogisticRegression(FIRST_OPTIMIZER, hash_bits=4)
    settings = Settings()
    for body in (SMALL_CSR_BODY, SMALL_ROWS_BODY):
        batch = batch_from_body(body, model, settings, require_labels=True)
        model.learn_batch(batch)
        record_body(batch)
        encode_batch(batch, 0)


def json_reader() -> None:
    """The compiled reader of JSON CSR bodies (:mod:`optim.formats.json_csr`): bodies of 4 KiB
    and more."""
    from optim.formats.json_csr import read_csr

    read_csr(SMALL_CSR_BODY)


def arrow_reader() -> None:
    """pyarrow (an optional extra: nothing to do without it) and the reading of an Arrow IPC
    body into a batch: the first Arrow request would import it otherwise, 0.2-1 s holding the
    GIL (on the event loop for a small body), every other request waiting meanwhile."""
    import io

    from optim.formats.arrow import batch_of_ipc
    from optim.hashing import FeatureHasher

    try:
        import pyarrow as pa
        import pyarrow.ipc
    except ImportError:
        return
    table = pa.table({"indices": [[0]], "values": [[1.0]], "label": [1]})
    sink = io.BytesIO()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    batch_of_ipc(sink.getvalue(), FeatureHasher(2), require_labels=True)


def text_parser(fmt: str, line: bytes) -> Callable[[], None]:
    def compile_parser() -> None:
        from optim.formats import parse_bytes

        parse_bytes(line, fmt, dim=2)

    return compile_parser


def plan(optimizers_in_use: Iterable[str] = ()) -> list[Piece]:
    """Every piece, in the order compiled: the learn loops of the optimizers in use and
    AdaGrad's, and the small-update path (needed); then their read loops, optimizer "auto"
    (the service's default: its members' update forms and driver), the text parsers, the
    Arrow reader (pyarrow's import), the other optimizers' loops, the JSON reader (~20-70 s
    cold: until it is warm, requests that could use it take the orjson path or a parser
    thread, see :meth:`Warmup.is_warm`) and the one-call predicts."""
    first = list(dict.fromkeys([*optimizers_in_use, FIRST_OPTIMIZER]))
    rest = [name for name in REGISTRY if name not in first]
    return [
        *(Piece(f"learn/{name}", lambda n=name: learn_loop(n), True) for name in first),
        Piece("update-path", small_update_path, True),
        *(Piece(f"reads/{name}", lambda n=name: read_loops(n)) for name in first),
        Piece("learn/auto", portfolio_loop),
        Piece("parser/vw", text_parser("vw", b"1 | a\n")),
        Piece("parser/libsvm", text_parser("libsvm", b"1 0:1\n")),
        Piece("parser/criteo", text_parser("criteo", CRITEO_LINE)),
        Piece("reader/arrow", arrow_reader),
        *(
            Piece(f"{kind}/{name}", lambda n=name, f=loop: f(n))
            for name in rest
            for kind, loop in (("learn", learn_loop), ("reads", read_loops))
        ),
        Piece(JSON_READER, json_reader),
        *(Piece(f"predict/{name}", lambda n=name: one_call_predict(n)) for name in [*first, *rest]),
        Piece("parser/ndjson", text_parser("ndjson", NDJSON_LINE)),
    ]


@dataclass
class Warmup:
    """Compiles ``pieces`` in order (:meth:`run`), logging each, and says how far it got."""

    pieces: list[Piece]
    ready: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    # Set at shutdown: no piece begins after it (numba compiling while the interpreter exits
    # can abort the process)
    stopping: threading.Event = field(default_factory=threading.Event)
    seconds: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    compiling: str | None = None

    def __post_init__(self) -> None:
        self._planned = {piece.name for piece in self.pieces}

    def run(self) -> None:
        """Compile every piece; :attr:`ready` is set once the needed ones are settled (warm or
        failed: a piece that does not compile is logged and reported, and the requests needing
        it get the error, but the rest of the service still serves)."""
        started = time.perf_counter()
        needed = {piece.name for piece in self.pieces if piece.needed}
        if not needed:
            self.ready.set()
        for piece in self.pieces:
            if self.stopping.is_set():  # a server shutting down: the rest compiles next time
                break
            self.compiling = piece.name
            log.info("compiling %s ...", piece.name)
            start = time.perf_counter()
            try:
                piece.compile()
            except Exception as error:  # reported by /readyz; the server goes on
                log.exception("compiling %s failed", piece.name)
                self.failed[piece.name] = f"{type(error).__name__}: {error}"
            else:
                self.seconds[piece.name] = time.perf_counter() - start
                log.info("%s warm in %.2f s", piece.name, self.seconds[piece.name])
            needed.discard(piece.name)
            if not needed and not self.ready.is_set():
                log.info("ready after %.1f s of compiling", time.perf_counter() - started)
                self.ready.set()
        self.compiling = None
        log.info(
            "all compiled code warm after %.1f s (%d failed)",
            time.perf_counter() - started, len(self.failed),
        )  # fmt: skip
        self.finished.set()

    def is_warm(self, piece: str) -> bool:
        """Whether ``piece`` is compiled, or compiles on first use (not planned): a request on
        the event loop takes another way than a piece still to compile, which would hold the
        loop (and every other request) until it is."""
        return piece in self.seconds or piece not in self._planned

    def status(self) -> dict[str, object]:
        """``/readyz``'s body: which pieces are warm, compiling, waiting or failed."""
        settled = self.seconds.keys() | self.failed.keys()
        return {
            "status": "ready" if self.ready.is_set() else "compiling kernels",
            "all_warm": self.finished.is_set() and not self.failed,
            "warm": list(self.seconds),
            "compiling": self.compiling if self.compiling not in settled else None,
            "pending": [
                piece.name
                for piece in self.pieces
                if piece.name not in settled and piece.name != self.compiling
            ],
            "failed": self.failed,
        }
