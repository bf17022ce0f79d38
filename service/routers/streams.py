"""``POST /v1/models/{name}/stream``: learn a streamed text body while it arrives.

The body is parsed by :class:`optim.formats.StreamParser` and learned in batches of at most
``stream_batch_rows`` rows; each batch takes the model's writer lock like an update, so
concurrent updates may land between two batches of a stream. The response is NDJSON: a progress
line every ``stream_progress_rows`` rows, the pre-update probabilities of every batch when
``?return_predictions=true``, and a final summary.

Receiving, parsing and learning form a pipeline (:class:`ParsedBody`), so that on two cores the
next part of the body is parsed in one worker thread while the previous batches are logged and
learned in another (the compiled parsers and learn kernels release the GIL). Memory stays
bounded whatever the body's length: a block being coalesced, one being parsed (or its batches
waiting for room in the queue), ``QUEUED_BATCHES`` batches queued and one being learned; with
``BLOCK_MAX_BYTES`` of 4 MiB, a few tens of MB per stream at most.

Unit of atomicity: the line. A malformed line, a line of more than ``max_nnz_per_row``
non-zeros, or a row a model refuses to learn (a value so large its state would overflow, ...)
stops the stream; every valid row before it is learned, and the final line says so: ``{"done":
true, "rows": <learned>, "error": {"line": n, "row": <its index in the stream>, "field": ...,
"detail": ...}}``. The status is 200 then (the response has begun); read ``error``. Every error
names its line: where the stream stopped (the first line of a batch when the whole batch was
refused, as when the log could not be written).

Holdout: ``?holdout_every=k`` holds out the stream's ``k``-th, ``2k``-th, ... row (1-based,
counting every row of this stream's body, as VW's ``--holdout_period`` counts the examples of its
input) in place of the model's own ``holdout_every`` (counted over every row the model is given,
across requests); ``0``: none in this stream. A held-out row is scored on the model as it stands
and not learned. The progress lines and summary carry ``holdout``: the stream's held-out rows,
their weighted log-loss and the AUC of the last ``recent_window`` of them (the model's setting;
all of them when fewer); ``log_loss`` is of the rows learned.

A stream cut by the client (the connection closed in the middle of the body) is learned up to
its last complete line: every complete line received before is learned and logged like any
other, and the half line is dropped; no summary is sent (nobody would read it).

A compressed body (``Content-Encoding: gzip`` or ``zstd``, :mod:`service.encoding`) is
decompressed as it arrives, at most ``max_body_bytes`` of it. One that ends in the middle of its
compressed stream, or goes past that bound, is learned like a cut stream up to its last complete
line, and the summary's error says why it stopped (``code`` ``truncated_body`` or
``payload_too_large``); when no row was learned before, the answer is that error's status
instead (400, 413: a bomb changes nothing). The answer's headers wait for its first line then.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
import numpy as np
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from adaserve_cli.formats import FORMAT_OF_MEDIA_TYPE
from optim import AdaserveError, Batch, LearnResult
from optim.formats import ParseError, StreamParser
from optim.metrics import ProgressiveMetrics
from optim.model import MAX_HOLDOUT_EVERY
from service import dependencies as deps
from service.auth import WRITE
from service.batches import check_row_sizes
from service.columnar import ARROW_BODY, ARROW_STREAM, stream_parser
from service.encoding import Decoder, content_encoding
from service.engine.errors import EngineError
from service.errors import ApiError, engine_error
from service.metrics import ServiceMetrics
from service.registry import ManagedModel
from service.schemas import ERROR_RESPONSES
from service.settings import Settings
from service.storage import RecordBody, record_body
from service.websafety import MediaTypeRoute, media_type

router = APIRouter(
    prefix="/v1/models/{name}",
    tags=["learning"],
    responses=ERROR_RESPONSES,
    route_class=MediaTypeRoute,
)

FORMATS = FORMAT_OF_MEDIA_TYPE  # the body's format by its Content-Type

# uvicorn hands the body over in pieces of at most ~256 KiB (one socket read), ~700 rows of a
# click log: parsed and learned one by one, each costs two thread hops, a log record and an fsync
# for few rows. The pieces are coalesced into blocks of about one batch (``stream_batch_rows``
# rows, by the bytes per row seen so far), within these bounds (memory per stream).
BLOCK_MIN_BYTES = 64 << 10
BLOCK_MAX_BYTES = 4 << 20
# A block a little under a batch: the piece that crosses the target then rarely spills a small
# second batch (its own log record, fsync and hops) out of the block.
BLOCK_FILL = 0.9
# Parsed batches waiting for the learner: enough for the parser to work one block ahead.
QUEUED_BATCHES = 2


@dataclasses.dataclass(frozen=True)
class Lines:
    """Where a parsed batch's rows are in the stream, to name a row's line in an error.

    Each line of a stream holds one row or is skipped (blank, a comment). The batch came from one
    call of the parser, which began at ``first_line`` and row ``first_row`` (1-based line, 0-based
    row of the stream) and read the bytes of ``text`` (the line it held from before, its block).
    When that call skipped no line (by far the usual case) a row's line follows by arithmetic and
    ``text`` is not kept; else the lines of ``text`` are parsed again one by one to find it (only
    for an error).
    """

    first_line: int
    first_row: int
    text: tuple[bytes, bytes] | None
    new_parser: Callable[[], StreamParser]
    batch_first_row: int = 0  # the stream row of the batch's first row

    def line_of(self, row: int) -> int:
        """The line of stream row ``row``, one of this call's."""
        if self.text is None:
            return self.first_line + row - self.first_row
        parser, rows = self.new_parser(), self.first_row
        for number, line in enumerate(b"".join(self.text).split(b"\n"), self.first_line):
            rows += sum(batch.n_rows for batch in parser.feed(line + b"\n"))
            if rows > row:
                return number
        raise AssertionError(f"row {row} is not in the text of lines from {self.first_line}")

    def stop(self, reason: str, row: int = 0, field: str | None = None) -> ParseError:
        """The error ending the stream at the batch's row ``row``: its line and stream row."""
        at = self.batch_first_row + row
        return ParseError(reason, line=self.line_of(at), row=at, field=field)


# A parsed batch, its log record's body and its lines.
Parsed = tuple[Batch, RecordBody, Lines]


def first_rows(batch: Batch, count: int) -> Batch:
    """The first ``count`` rows of ``batch`` (views of its arrays)."""
    end = int(batch.indptr[count])
    return Batch(
        batch.indptr[: count + 1], batch.indices[:end], batch.values[:end],
        None if batch.labels is None else batch.labels[:count],
        None if batch.weights is None else batch.weights[:count], batch.dim,
        batch.feature_names, None if batch.holdout is None else batch.holdout[:count],
    )  # fmt: skip


class BodyStreamingResponse(StreamingResponse):
    """Streams while the request body is still being read by the endpoint's generator.

    Starlette's own response would also listen on ``receive`` for a disconnect, racing the
    generator for the body's chunks; a disconnect shows up as ``ClientDisconnect`` there instead.
    ``hold_headers``: the status waits for the first line, so an :class:`ApiError` raised before
    it is the answer (the app's error handler writes it).
    """

    hold_headers = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if self.hold_headers:
                rest = self.body_iterator
                first = await anext(aiter(rest), None)  # type: ignore[call-overload]

                async def whole() -> AsyncIterator[bytes]:
                    if first is not None:
                        yield first
                        async for line in rest:  # type: ignore[union-attr]
                            yield line

                self.body_iterator = whole()
            await self.stream_response(send)
        finally:
            # Close the generator now, not whenever it is garbage-collected: its ``finally``
            # stops the pipeline's tasks (and waits for their worker threads).
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


class ParsedBody:
    """The request body, received and parsed ahead of the learner: :meth:`next` gives its
    batches in order, each with its log record's body (:func:`service.storage.record_body`),
    made in the parser's worker thread rather than by a model's log writer, which writes one
    group at a time.

    Two tasks: one receives the body's pieces and coalesces them (bounded); one hands blocks to
    ``parser`` in a worker thread and queues the batches (at most ``QUEUED_BATCHES``). A full
    queue stops the parser, a full block the receiver, and uvicorn then stops reading the socket:
    the client is slowed down instead of memory growing.

    Blocks are about one batch while the learner is busy (fewer, larger batches: fewer hops, log
    records and fsyncs); when the learner waits for work, whatever has arrived is parsed at once,
    so a slow (live) stream is learned as it arrives, as before.
    """

    def __init__(
        self,
        request: Request,
        new_parser: Callable[[], StreamParser],
        batch_rows: int,
        max_nnz_per_row: int,
        decoder: Decoder,
    ) -> None:
        self.request = request
        self.decoder = decoder
        self.new_parser = new_parser
        self.parser = new_parser()
        self.batch_rows = batch_rows
        self.max_nnz_per_row = max_nnz_per_row
        self.error: ParseError | None = None  # the line that ended the body, if any
        self._unterminated = b""  # the start of a line the parser holds (for Lines.text)
        self._pieces: list[bytes] = []
        self._pending = 0  # bytes in _pieces
        self._received_all = False  # or the receiver stopped (_failure says why)
        self.disconnected = False  # the client went away before the body's end
        # why the body's compressed stream stopped short (truncated, or past the bound): its
        # complete lines are learned, as for a disconnect, and this ends the stream
        self.cut: ApiError | None = None
        self._failure: BaseException | None = None  # from receiving, but a disconnect
        self._fed = 0  # bytes given to the parser, for the bytes-per-row estimate
        self._block = BLOCK_MAX_BYTES  # until rows were seen
        self._learner_waiting = False
        self._parser_wake = asyncio.Event()  # pieces arrived, the body ended, or the learner waits
        self._receiver_wake = asyncio.Event()  # the parser took the pending pieces
        self._parsing: asyncio.Future[tuple[list[Parsed], ParseError | None]] | None = None
        self._queue: asyncio.Queue[tuple[Parsed | None, BaseException | None]] = asyncio.Queue(
            QUEUED_BATCHES
        )
        self._tasks = [
            asyncio.create_task(self._receive(), name="stream-receive"),
            asyncio.create_task(self._parse(), name="stream-parse"),
        ]

    def _estimate_block(self) -> None:
        """After a parse: bytes to coalesce while the learner is busy, about one batch."""
        rows = self.parser.rows_parsed
        if rows:
            per_row = (self._fed - self.parser.buffered_bytes) / rows
            wanted = int(BLOCK_FILL * per_row * self.batch_rows)
            self._block = min(BLOCK_MAX_BYTES, max(BLOCK_MIN_BYTES, wanted))

    async def next(self) -> Parsed | None:
        """The next batch in body order with its record body and lines; None at the end
        (``error`` says if a line was bad, ``disconnected`` if the client went away: the body's
        complete lines are given then, its half line dropped).

        Raises what else receiving (at once) or parsing raised.
        """
        if self._failure is not None:
            raise self._failure
        if self._queue.empty():
            self._learner_waiting = True  # the parser need not wait for a full block
            self._parser_wake.set()
        try:
            parsed, problem = await self._queue.get()
        finally:
            self._learner_waiting = False
        if isinstance(problem, ParseError):
            self.error = problem
            return None
        if problem is not None:
            raise problem
        return parsed

    async def aclose(self) -> None:
        """Stop both tasks, and wait for a parse under way to end in its worker thread."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._parsing is not None:
            await asyncio.gather(self._parsing, return_exceptions=True)

    async def _receive(self) -> None:
        try:
            async with contextlib.aclosing(self.request.stream()) as pieces:
                async for received in pieces:
                    # all of a received piece decompressed before any is parsed: a bomb
                    # (a piece making more than the bound) is refused before a row is learned
                    for piece in list(self.decoder.feed(received)):
                        self._pieces.append(piece)
                        self._pending += len(piece)
                        self._parser_wake.set()
                        while self._pending >= self._block:
                            self._receiver_wake.clear()
                            await self._receiver_wake.wait()
            self.decoder.end()
        except ClientDisconnect:  # the complete lines received are still learned
            self.disconnected = True
        except ApiError as exc:  # decompressing: truncated, past the bound, not valid
            self.cut = exc
        except Exception as exc:  # the learner stops at once
            self._failure = exc
        finally:
            self._received_all = True
            self._parser_wake.set()

    def _parse_block(self, block: bytes, last: bool) -> tuple[list[Parsed], ParseError | None]:
        """In a worker thread: the batches of ``block``'s complete lines (and of an unterminated
        last line if ``last``), with their record bodies and lines, up to the first line that is
        malformed or has more than ``max_nnz_per_row`` non-zeros (the error)."""
        first_line, first_row = self.parser.lines_read + 1, self.parser.rows_parsed
        unterminated = self._unterminated
        batches: list[Batch] = []
        error = None
        try:
            if block:
                batches += self.parser.feed(block)
            if last:
                batches += self.parser.finish()
        except ParseError as exc:
            batches, error = batches + exc.valid_before, exc
        held = self.parser.buffered_bytes
        if held <= len(block):
            self._unterminated = block[len(block) - held :]
        else:
            self._unterminated = unterminated[len(unterminated) - held + len(block) :] + block
        lines_of_rows = (error.line if error else self.parser.lines_read + 1) - first_line
        skipped = lines_of_rows - (self.parser.rows_parsed - first_row)
        lines = Lines(
            first_line, first_row, (unterminated, block) if skipped else None, self.new_parser
        )
        parsed: list[Parsed] = []
        for batch in batches:
            at = dataclasses.replace(lines, batch_first_row=first_row)
            first_row += batch.n_rows
            try:
                check_row_sizes(batch, self.max_nnz_per_row)
            except ApiError as exc:
                row = exc.where["row"]
                if row:  # the rows before it are learned, as before a malformed line
                    valid = first_rows(batch, row)
                    parsed.append((valid, record_body(valid), at))
                return parsed, at.stop(exc.detail, row)
            parsed.append((batch, record_body(batch), at))
        return parsed, error

    async def _parse(self) -> None:
        try:
            while True:
                while not (
                    self._received_all
                    or self._pending >= self._block
                    or (self._pending and self._learner_waiting)
                ):
                    self._parser_wake.clear()
                    await self._parser_wake.wait()
                if self._failure is not None:
                    await self._queue.put((None, self._failure))
                    return
                last = self._received_all
                # else a half line is dropped
                whole = last and not self.disconnected and self.cut is None
                block = b"".join(self._pieces)
                self._pieces.clear()
                self._pending = 0
                self._receiver_wake.set()
                self._fed += len(block)
                # Shielded: cancelling this task (aclose) must not return before the worker
                # thread is done with the parser; aclose awaits _parsing for that.
                self._parsing = asyncio.ensure_future(
                    anyio.to_thread.run_sync(self._parse_block, block, whole)
                )
                parsed, error = await asyncio.shield(self._parsing)
                self._estimate_block()
                for batch_and_record in parsed:
                    await self._queue.put((batch_and_record, None))
                if error is not None or last:
                    await self._queue.put((None, error))
                    return
        except Exception as exc:  # a bug, MemoryError...: the learner raises it
            await self._queue.put((None, exc))


def _line(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload) + b"\n"


STREAM_BODY: dict[str, Any] = {
    "responses": {
        200: {"content": {"application/x-ndjson": {}}, "description": "progress lines, summary"},
        415: {"description": "unsupported Content-Type"},
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {ct: {"schema": {"type": "string"}} for ct in FORMATS} | ARROW_BODY,
        }
    },
}


@router.post(
    "/stream",
    dependencies=[WRITE],
    summary="Learn a streamed body (NDJSON, libsvm, VW or Criteo text, or an Arrow IPC "
    "stream) while it arrives",
    response_class=BodyStreamingResponse,
    **STREAM_BODY,
)
async def stream(
    request: Request,
    managed: Annotated[ManagedModel, Depends(deps.model)],
    settings: Annotated[Settings, Depends(deps.settings)],
    metrics: Annotated[ServiceMetrics, Depends(deps.metrics)],
    return_predictions: Annotated[
        bool, Query(description="each row's pre-update probability")
    ] = False,
    holdout_every: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_HOLDOUT_EVERY,
            description="hold out the stream's k-th, 2k-th, ... row instead of the model's own "
            "holdout_every (0: none)",
        ),
    ] = None,
) -> BodyStreamingResponse:
    return learning_stream(
        request, [managed], settings, metrics, return_predictions, holdout_every=holdout_every
    )


async def learn_in_each(
    targets: list[ManagedModel], batch: Batch, metrics: ServiceMetrics, record: RecordBody | None
) -> list[LearnResult]:
    """``batch`` learned by every target at once (each model's writer, or actor on a cluster,
    learns in parallel); the first error raised, once all of them are done."""
    outcomes = await asyncio.gather(
        *(target.learn(batch, metrics.learned, record) for target in targets),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes  # type: ignore[return-value]


def learning_stream(
    request: Request,
    targets: list[ManagedModel],
    settings: Settings,
    metrics: ServiceMetrics,
    return_predictions: bool = False,
    order: asyncio.Lock | None = None,
    holdout_every: int | None = None,
) -> BodyStreamingResponse:
    """Parse the body once and learn every batch into each target, in order.

    With one target the progress lines carry its ``step`` and ``log_loss``; with several (an
    experiment) a ``members`` object maps each to them. ``order`` (an experiment's lock) keeps
    concurrent writers from interleaving differently in different members.
    """
    first = targets[0].model
    decoder = Decoder(content_encoding(request.headers), settings.max_body_bytes)  # else 415
    given = media_type(request.headers.get("content-type"))  # one MediaTypeRoute accepted
    # An Arrow stream has no lines: its errors' line numbers count rows from 1.
    new_parser = stream_parser(first, settings) if given == ARROW_STREAM else functools.partial(
        StreamParser, FORMATS[given], dim=first.dim, hash_seed=first.hasher.seed,
        max_rows_per_batch=settings.stream_batch_rows,
        max_line_bytes=settings.max_stream_line_bytes, features=first.features,
    )  # fmt: skip
    rows = 0
    losses = {t.name: [0.0, 0.0] for t in targets}  # weighted loss sum, weight sum
    holdout = {t.name: ProgressiveMetrics(t.model.metrics.window) for t in targets}

    def account(name: str, batch: Batch, result: LearnResult) -> None:
        """Add the batch's rows learned and held out to the stream's sums."""
        weights = batch.weights if batch.weights is not None else np.ones(batch.n_rows)
        learned = weights if result.held_out is None else weights[~result.held_out]
        weight = float(learned.sum())
        losses[name][0] += result.log_loss * weight if weight else 0.0
        losses[name][1] += weight
        if result.held_out is not None:
            held = result.held_out
            assert batch.labels is not None  # learned batches are labelled
            holdout[name].update(
                result.losses[held], result.probabilities[held], batch.labels[held], weights[held]
            )

    async def learn(batch: Batch, record: RecordBody | None) -> list[bytes]:
        """Learn ``batch`` into every target; the lines to send for it."""
        nonlocal rows
        out = []
        if holdout_every is not None:  # the stream's rows rows+1, rows+2, ...
            positions = np.arange(rows + 1, rows + batch.n_rows + 1)
            held = positions % holdout_every == 0 if holdout_every else positions < 0
            batch = dataclasses.replace(batch, holdout=held)
        async with order or contextlib.nullcontext():
            results = await learn_in_each(targets, batch, metrics, record)
        for target, result in zip(targets, results, strict=True):
            account(target.name, batch, result)
        before = rows // settings.stream_progress_rows
        rows += batch.n_rows
        if return_predictions:
            probabilities = {
                t.name: r.probabilities.tolist() for t, r in zip(targets, results, strict=True)
            }
            single = len(targets) == 1
            out.append(_line({"probabilities": results[0].probabilities.tolist()} if single
                             else {"probabilities": probabilities}))  # fmt: skip
        if rows // settings.stream_progress_rows > before:
            out.append(_line(progress()))
        return out

    async def learn_until_refused(
        batch: Batch, record: RecordBody | None, lines: Lines
    ) -> tuple[list[bytes], dict[str, Any] | None]:
        """:func:`learn`, and when a model refuses a row, the summary's error naming its line;
        with one target, the rows before the refused one are learned then (a refused row is like
        a malformed line). With several, some may have learned the batch. When the model's
        engine refuses the batch (the log failed, the model was deleted) the stream stops there,
        the error carrying the engine's code."""
        try:
            return await learn(batch, record), None
        except AdaserveError as exc:  # a value too large for the state, the step limit...
            row, error = exc.row or 0, lines.stop(exc.reason, exc.row or 0, exc.field)
        except EngineError as exc:
            refused, stopped = engine_error(exc), lines.stop(exc.detail)
            return [], {"code": refused.code, **refused.where, **stopped.where,
                        "detail": str(stopped)}  # fmt: skip
        if row == 0 or len(targets) > 1:
            return [], {**error.where, "detail": str(error)}
        out, before = await learn_until_refused(first_rows(batch, row), None, lines)
        return out, before or {**error.where, "detail": str(error)}

    def held_out(name: str) -> dict[str, Any]:
        if not holdout[name].rows:
            return {"rows": 0, "log_loss": None, "auc": None}
        summary = holdout[name].to_dict()
        overall, recent = summary["overall"], summary["recent"]
        assert isinstance(overall, dict) and isinstance(recent, dict)
        return {"rows": holdout[name].rows, "log_loss": overall["log_loss"], "auc": recent["auc"]}

    def progress() -> dict[str, Any]:
        members = {
            t.name: {
                "step": t.model.step,
                "log_loss": loss / weight if weight else None,
                "holdout": held_out(t.name),
            }
            for t in targets
            for loss, weight in [losses[t.name]]
        }
        if len(targets) == 1:
            return {"rows": rows, **members[targets[0].name]}
        return {"rows": rows, "members": members}

    async def body() -> AsyncIterator[bytes]:
        error: dict[str, Any] | None = None
        parsed = ParsedBody(
            request, new_parser, settings.stream_batch_rows, settings.max_nnz_per_row, decoder
        )
        try:
            while error is None and (parsed_batch := await parsed.next()) is not None:
                out, error = await learn_until_refused(*parsed_batch)
                for line in out:
                    yield line
            if error is None and parsed.error is not None:
                error = {**parsed.error.where, "detail": str(parsed.error)}
            if error is None and (cut := parsed.cut) is not None:
                if rows == 0:  # nothing learned, nothing sent: the answer is the refusal
                    raise cut
                error = {"code": cut.code, **cut.where, "row": rows, "detail": cut.detail}
        finally:
            await parsed.aclose()
        if parsed.disconnected:
            return  # nobody to read a summary
        yield _line({"done": True, **progress(), "error": error})

    response = BodyStreamingResponse(body(), media_type="application/x-ndjson")
    response.hold_headers = decoder.compressed
    return response
