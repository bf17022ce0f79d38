"""``adaserve train`` and ``adaserve predict``: the command-line front end over :mod:`optim`.

``train`` learns a model from text files in one pass (or ``--passes N``), as ``vw -d FILE``
does, with progressive validation: every row is scored before it is learned, and the table on
stderr shows the log-loss of those scores. It writes the model file that ``model.save`` writes
and the service imports (``POST /v1/models/{name}/import``). ``predict`` scores a file with a
saved model. No server is involved.

Inputs are read in chunks by :func:`optim.formats.iter_file_batches` (``.gz`` is decompressed,
``-`` is stdin), so memory is the model's state plus one chunk and one batch, whatever the
file's size. A malformed line stops the run with its file, line number and reason; every row
before it has been learned (the parsers' atomicity), and the model file is written only when
asked to (``--save-partial``).

Exit codes: 0 done; 1 an I/O failure (unreadable input, unwritable output); 2 bad input (a
malformed line, a bad setting); 130 interrupted.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import queue
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from adaserve_cli import columnar
from adaserve_cli.columnar import FORMATS as COLUMNAR_FORMATS

if TYPE_CHECKING:  # optim (numba) is imported when a command runs, not for `adaserve --help`
    from optim import Batch, OnlineLogisticRegression

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
STDIN = "-"
# A truncated or corrupt .gz raises one of these while it is read.
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


class CommandError(Exception):
    """Stops a command: a message for stderr and the exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------- options
# optim.formats.FORMATS, spelled out so that `adaserve --help` does not import numba
FORMATS = ("libsvm", "vw", "criteo", "ndjson")
INPUT_FORMATS = FORMATS + COLUMNAR_FORMATS  # and the columnar files of adaserve_cli.columnar
TRAIN_EPILOG = """\
examples:
  adaserve train clicks.libsvm.gz --format libsvm --hash-bits 20 --lr 0.1 --output clicks.npz
  zcat day*.gz | adaserve train - --format criteo --hash-bits 22 --optimizer ftrl \\
      --param alpha=0.05 --param l1=1 --output clicks.npz
  adaserve train a.vw --format vw --hash-bits 18 --optimizer adam --param betas=0.9,0.999 \\
      --lazy frozen --progress-every 100000 --output a.npz

The table on stderr shows, at rows 1, 2, 4, ... (or every --progress-every rows), the
progressive log-loss (each row scored before it is learned) over all rows so far and over the
rows since the previous line, and the throughput so far. A malformed line stops the run (exit
2) naming the file, line and reason; the rows before it are learned, and the model file is
written only with --save-partial. Exit codes: 0 done, 1 I/O failure, 2 bad input, 130 Ctrl-C.
"""


def _param(text: str) -> tuple[str, float | list[float]]:
    try:
        return parse_param(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _train(args: argparse.Namespace) -> int:
    return run(run_train, args)


def _predict(args: argparse.Namespace) -> int:
    return run(run_predict, args)


def _add_train(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="learn a model file from text files, one progressive pass (as vw -d)",
        description="Learn a model from FILEs (- is stdin, .gz is decompressed) in one pass "
        "with progressive validation, and write the file the service imports.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("files", nargs="+", metavar="FILE", help="input files; - reads stdin")
    train.add_argument("--format", required=True, choices=INPUT_FORMATS, help="input format")
    train.add_argument("--optimizer", default="adagrad", help="optimizer name (default adagrad)")
    train.add_argument("--lr", type=float, help="learning rate (same as --param lr=...)")
    train.add_argument(
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="NAME=VALUE",
        help="an optimizer hyperparameter, repeatable: --param eps=1e-8 --param betas=0.9,0.999",
    )
    train.add_argument(
        "--lazy",
        choices=("exact", "frozen"),
        default="exact",
        help="absent coordinates: exact (dense algorithm) or frozen",
    )
    size = train.add_mutually_exclusive_group(required=True)
    size.add_argument("--dim", type=_positive, help="number of feature coordinates")
    size.add_argument("--hash-bits", type=int, help="dim = 2**B")
    train.add_argument("--hash-seed", type=int, default=0, help="MurmurHash3 seed (default 0)")
    train.add_argument("--no-intercept", action="store_true", help="learn no intercept")
    train.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    train.add_argument("--output", "-o", help="model file to write (.npz, as the service exports)")
    train.add_argument(
        "--save-partial",
        action="store_true",
        help="after a malformed line, still write the rows learned before it",
    )
    train.add_argument("--passes", type=_positive, default=1, help="passes over the input")
    train.add_argument(
        "--progress-every",
        type=_positive,
        metavar="N",
        help="a table line every N rows (default: at 1, 2, 4, 8, ... rows)",
    )
    train.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bar or table (the final summary is still printed)",
    )
    train.set_defaults(run=_train)


def _add_predict(commands: Any) -> None:
    predict = commands.add_parser(
        "predict",
        help="score a file with a model file: one probability per line",
        description="Write P(label=1) for every row of FILE (- is stdin), one per line; when "
        "every row has a label, print the log-loss and AUC on stderr.",
    )
    predict.add_argument("file", metavar="FILE", help="input file; - reads stdin")
    predict.add_argument("--model", "-m", required=True, help="model file (adaserve train -o)")
    predict.add_argument("--format", required=True, choices=INPUT_FORMATS, help="input format")
    predict.add_argument("--output", "-o", help="probabilities file (default stdout)")
    predict.add_argument(
        "--no-labels", action="store_true", help="ignore labels in the file: no log-loss or AUC"
    )
    predict.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    predict.set_defaults(run=_predict)


def add_commands(commands: Any) -> None:
    """Add ``train`` and ``predict`` to the CLI's subparsers (``service.cli.build_parser``)."""
    _add_train(commands)
    _add_predict(commands)


# --------------------------------------------------------------------------------- inputs
def parse_param(text: str) -> tuple[str, float | list[float]]:
    """``"lr=0.1"`` -> ``("lr", 0.1)``; ``"betas=0.9,0.999"`` -> ``("betas", [0.9, 0.999])``."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name or not value.strip():
        raise ValueError(f"expected name=value, got {text!r}")
    try:
        numbers = [float(v) for v in value.split(",")]
    except ValueError:
        raise ValueError(f"{name}: expected a number or numbers separated by commas") from None
    return name, numbers if len(numbers) > 1 else numbers[0]


def _display(source: str) -> str:
    return "<stdin>" if source == STDIN else source


def check_inputs(sources: Sequence[str], passes: int = 1) -> int | None:
    """Validate the inputs before any work; return their total size in bytes (None: unknown)."""
    if sources.count(STDIN) > 1 or (STDIN in sources and passes > 1):
        raise CommandError("stdin ('-') can be read only once: give it once, with --passes 1")
    total: int | None = 0
    for source in sources:
        if source == STDIN:
            total = None
            continue
        if not os.path.isfile(source) or not os.access(source, os.R_OK):
            reason = "is not a readable file" if os.path.exists(source) else "does not exist"
            raise CommandError(f"{source}: {reason}", EXIT_FAILURE)
        if total is not None:
            total += os.path.getsize(source)
    return total


def check_output(path: str | None) -> None:
    """Refuse an output path that cannot be written before spending time on the input."""
    if path is None or path == STDIN:
        return
    parent = Path(path).resolve().parent
    if Path(path).is_dir():
        raise CommandError(f"--output {path}: is a directory", EXIT_FAILURE)
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise CommandError(f"--output {path}: directory {parent} is not writable", EXIT_FAILURE)


class _CountingReader:
    """A binary reader that reports how many (raw, compressed) bytes were read."""

    def __init__(self, raw: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_read = on_read
        self.name = getattr(raw, "name", "")
        self.mode = "rb"

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self._on_read(len(data))
        return data


@contextmanager
def open_source(source: str, on_read: Callable[[int], None]) -> Iterator[IO[bytes]]:
    """A binary handle on a path (``.gz`` decompressed) or ``-`` (stdin, read as is)."""
    if source == STDIN:
        yield _CountingReader(sys.stdin.buffer, on_read)  # type: ignore[misc]
        return
    with open(source, "rb") as raw:
        counted = _CountingReader(raw, on_read)
        if source.endswith(".gz"):
            with gzip.GzipFile(fileobj=counted, mode="rb") as unzipped:  # type: ignore[arg-type]
                yield unzipped  # type: ignore[misc]
        else:
            yield counted  # type: ignore[misc]


def _bar(total: int | None, quiet: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        file=sys.stderr,
        disable=quiet or not _isatty(sys.stderr),
        leave=False,
        dynamic_ncols=True,
    )


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextmanager
def _atomic_output(path: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file beside it, renamed over it only on success."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0o600
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def _weighted(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    return values if weights is None else values * weights


# --------------------------------------------------------------------------------- train
class ProgressTable:
    """The periodic table of ``train``: rows, progressive log-loss overall and since the last line.

    Lines come at rows 1, 2, 4, 8, ... (``every=None``, as VW prints) or every ``every`` rows,
    computed exactly at those rows from each batch's per-row losses (a batch is learned in one
    call; the line for row 1000 of a 10,000-row batch still shows the loss of rows 1..1000).
    ``rows/s`` is the throughput so far, measured when the batch holding that row was learned.
    """

    HEADER = f"{'rows':>12} {'log-loss':>10} {'since last':>10} {'rows/s':>10}"

    def __init__(self, every: int | None, write: Callable[[str], None], start: float) -> None:
        self.every = every
        self.write = write
        self.start = start
        self.next = every or 1
        self.rows = 0
        self.loss = 0.0  # weighted sums over every row so far
        self.weight = 0.0
        self._last = (0.0, 0.0)  # loss and weight sums at the last line
        self._header = False

    def add(self, losses: np.ndarray, weights: np.ndarray | None) -> None:
        n = losses.shape[0]
        end = self.rows + n
        weighted = _weighted(losses, weights)
        if self.next > end:  # the common case: no line in this batch
            self.loss += float(weighted.sum())
            self.weight += float(n if weights is None else weights.sum())
            self.rows = end
            return
        cum_loss = np.cumsum(weighted)
        cum_weight = np.arange(1.0, n + 1.0) if weights is None else np.cumsum(weights)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        while self.next <= end:
            k = self.next - self.rows - 1
            self._line(
                self.next, self.loss + cum_loss[k], self.weight + cum_weight[k], end / elapsed
            )
            self.next = self.next + self.every if self.every else self.next * 2
        self.loss += float(cum_loss[-1])
        self.weight += float(cum_weight[-1])
        self.rows = end

    def _line(self, rows: int, loss: float, weight: float, rate: float) -> None:
        if not self._header:
            self.write(self.HEADER)
            self._header = True
        last_loss, last_weight = self._last
        overall = loss / weight if weight > 0 else math.nan
        since = (loss - last_loss) / (weight - last_weight) if weight > last_weight else math.nan
        self.write(f"{rows:>12} {overall:>10.6f} {since:>10.6f} {rate:>10.0f}")
        self._last = (loss, weight)


@dataclass
class TrainOutcome:
    """What a training run did; ``error`` is set when a bad line (or Ctrl-C) stopped it."""

    model: OnlineLogisticRegression
    rows: int = 0
    seconds: float = 0.0
    bytes_read: int = 0
    error: CommandError | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else math.nan


class _AtSource(Exception):
    """An error while reading ``where`` (a file, and the pass when there are several)."""

    def __init__(self, where: str, error: BaseException) -> None:
        super().__init__(f"{where}: {error}")
        self.where = where
        self.error = error


def _describe(located: _AtSource) -> CommandError:
    from optim import AdaserveError

    error, where = located.error, located.where
    if isinstance(error, _GZIP_ERRORS):
        return CommandError(f"{where}: not a readable gzip stream ({error})", EXIT_BAD_INPUT)
    if isinstance(error, AdaserveError):  # a malformed line: ParseError
        return CommandError(f"{where}: {error}", EXIT_BAD_INPUT)
    reason = error.strerror if isinstance(error, OSError) and error.strerror else error
    return CommandError(f"{where}: {reason}", EXIT_FAILURE)


def _located_batches(
    sources: Sequence[str],
    fmt: str,
    *,
    dim: int,
    hash_seed: int,
    passes: int = 1,
    on_read: Callable[[int], None],
    require_labels: bool = True,
) -> Generator[Batch, None, None]:
    """The batches of every source, ``passes`` times over; errors wrapped in :class:`_AtSource`."""
    from optim import AdaserveError
    from optim.formats import iter_file_batches

    for pass_number in range(1, passes + 1):
        for source in sources:
            where = _display(source) + (f" (pass {pass_number})" if passes > 1 else "")
            try:
                if fmt in COLUMNAR_FORMATS:
                    yield from columnar.file_batches(
                        source, fmt, dim=dim, hash_seed=hash_seed, require_labels=require_labels,
                        on_read=on_read,
                    )  # fmt: skip
                    continue
                with open_source(source, on_read) as handle:
                    yield from iter_file_batches(
                        handle, fmt, dim=dim, hash_seed=hash_seed, require_labels=require_labels
                    )
            except (AdaserveError, OSError, *_GZIP_ERRORS) as error:
                raise _AtSource(where, error) from error


_END = object()


def read_ahead(items: Iterator[Any], depth: int = 2) -> Generator[Any, None, None]:
    """``items``, produced by a reader thread up to ``depth`` ahead of the consumer.

    Reading and parsing (numba kernels compiled ``nogil``) then overlap learning (also
    ``nogil``), as VW's parser thread does: nearly twice the rows/s when two cores are free. The
    items, and the exception that ends them, arrive in order, so the result is the same as
    iterating ``items`` directly. Closing the generator stops the thread.
    """
    ready: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any, error: BaseException | None = None) -> bool:
        while not stop.is_set():
            try:
                ready.put((item, error), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # forwarded to the consumer, in order
            put(_END, error)
        else:
            put(_END)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="adaserve-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()


def train(
    sources: Sequence[str],
    model: OnlineLogisticRegression,
    fmt: str,
    *,
    passes: int = 1,
    progress_every: int | None = None,
    quiet: bool = False,
    write: Callable[[str], None] | None = None,
    start: float | None = None,
) -> TrainOutcome:
    """Learn every row of ``sources`` (``passes`` times over) into ``model``, progressively.

    The batches are those of :func:`optim.formats.iter_file_batches` over each source, read and
    parsed by a thread ahead of learning (:func:`read_ahead`). Stops at the first malformed line
    with ``outcome.error`` set (every row before it learned).
    """
    from optim import AdaserveError

    total = check_inputs(sources, passes)
    start = time.perf_counter() if start is None else start
    outcome = TrainOutcome(model)
    bar = _bar(None if total is None else total * passes, quiet, "train")

    def emit(line: str) -> None:
        (write or (lambda s: bar.write(s, file=sys.stderr)))(line)

    table = None if quiet else ProgressTable(progress_every, emit, start)

    def on_read(n: int) -> None:
        outcome.bytes_read += n
        bar.update(n)

    batches = read_ahead(
        _located_batches(
            sources, fmt, dim=model.dim, hash_seed=model.hasher.seed, passes=passes,
            on_read=on_read,
        )
    )  # fmt: skip
    try:
        for batch in batches:
            result = model.learn_batch(batch)
            outcome.rows += batch.n_rows
            if table is not None:
                table.add(result.losses, batch.weights)
    except _AtSource as located:
        outcome.error = _describe(located)
    except AdaserveError as error:  # from learning: a float32 model's step limit
        outcome.error = CommandError(str(error), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        outcome.error = CommandError("interrupted", EXIT_INTERRUPTED)
    finally:
        batches.close()
        bar.close()
        outcome.seconds = time.perf_counter() - start
    return outcome


def build_model(
    optimizer: str,
    params: Sequence[tuple[str, Any]] = (),
    *,
    lr: float | None = None,
    dim: int | None = None,
    hash_bits: int | None = None,
    lazy: str = "exact",
    fit_intercept: bool = True,
    dtype: str = "float64",
    hash_seed: int = 0,
) -> OnlineLogisticRegression:
    """The model of the command-line settings (a bad setting is a :class:`CommandError`)."""
    from optim import AdaserveError, OnlineLogisticRegression

    spec: dict[str, Any] = {"name": optimizer}
    if lr is not None:
        spec["lr"] = lr
    spec.update(params)
    try:
        return OnlineLogisticRegression(
            spec,
            dim,
            hash_bits=hash_bits,
            lazy=lazy,
            fit_intercept=fit_intercept,
            dtype=dtype,
            hash_seed=hash_seed,
        )
    except AdaserveError as error:
        raise CommandError(str(error)) from None


def save_model(model: OnlineLogisticRegression, path: str) -> None:
    """``model.save(path)``, through a temporary file: a failed write leaves ``path`` as it was."""
    try:
        with _atomic_output(path) as handle:
            model.save(handle)
    except OSError as error:
        raise CommandError(f"--output {path}: {error}", EXIT_FAILURE) from None


def run_train(args: Any) -> int:
    """``adaserve train``: the arguments of :func:`service.cli.build_parser`."""
    start = time.perf_counter()
    check_output(args.output)
    check_inputs(args.files, args.passes)  # before importing optim and allocating the state
    model = build_model(
        args.optimizer,
        args.param,
        lr=args.lr,
        dim=args.dim,
        hash_bits=args.hash_bits,
        lazy=args.lazy,
        fit_intercept=not args.no_intercept,
        dtype=args.dtype,
        hash_seed=args.hash_seed,
    )
    outcome = train(
        args.files,
        model,
        args.format,
        passes=args.passes,
        progress_every=args.progress_every,
        quiet=args.quiet,
        start=start,
    )
    save = args.output is not None and (outcome.error is None or args.save_partial)
    if save:
        save_model(model, args.output)
    _print_summary(outcome, args.output if save else None)
    if outcome.error is None:
        return EXIT_OK
    what = "the partial model was written to" if save else "no model was written"
    target = f" {args.output}" if save else ""
    hint = " (--save-partial writes it)" if args.output is not None and not save else ""
    print(
        f"adaserve train: error: {outcome.error}\n"
        f"adaserve train: {outcome.rows} rows were learned before it; {what}{target}{hint}",
        file=sys.stderr,
    )
    return outcome.error.code


def _print_summary(outcome: TrainOutcome, output: str | None) -> None:
    model = outcome.model
    overall = model.metrics.to_dict()["overall"]
    loss = overall["log_loss"]  # type: ignore[index]
    lines = [
        "finished" if outcome.error is None else "stopped",
        f"rows        {outcome.rows}",
        f"log-loss    {loss:.6f}" if loss is not None else "log-loss    n/a",
        f"seconds     {outcome.seconds:.3f}",
        f"rows/s      {outcome.rows_per_s:.0f}",
        f"state       {model.state_bytes / 2**20:.1f} MiB ({model.spec.name}, dim {model.dim})",
    ]
    if output is not None:
        lines.append(f"model       {output} (step {model.step})")
    print("\n".join(lines), file=sys.stderr)


# --------------------------------------------------------------------------------- predict
@dataclass
class PredictOutcome:
    rows: int = 0
    labeled: bool = True  # every row had a label
    log_loss: float = math.nan
    auc: float = math.nan
    seconds: float = 0.0


def predict(
    source: str,
    model: OnlineLogisticRegression,
    fmt: str,
    out: IO[str],
    *,
    use_labels: bool = True,
    quiet: bool = False,
) -> PredictOutcome:
    """Write one probability per row of ``source`` to ``out``; metrics when every row has a label.

    Raises :class:`CommandError` on a malformed line (the probabilities of the rows before it
    have been written).
    """
    from optim.metrics import auc, log_losses, probabilities

    total = check_inputs([source])
    start = time.perf_counter()
    outcome = PredictOutcome(labeled=use_labels)
    margins: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    weights: list[np.ndarray | None] = []
    bar = _bar(total, quiet, "predict")
    batches = read_ahead(
        _located_batches(
            [source], fmt, dim=model.dim, hash_seed=model.hasher.seed, on_read=bar.update,
            require_labels=False,
        )
    )  # fmt: skip
    try:
        for batch in batches:
            m = model.decision_function(batch)
            p = probabilities(m)
            if p.size:
                out.write("\n".join(map(repr, p.tolist())) + "\n")
            outcome.rows += batch.n_rows
            if outcome.labeled and batch.labels is None and batch.n_rows:
                outcome.labeled = False
                margins.clear()
                labels.clear()
                weights.clear()
            if outcome.labeled and batch.n_rows:
                margins.append(m)
                labels.append(batch.labels)  # type: ignore[arg-type]
                weights.append(batch.weights)
    except _AtSource as located:
        error = _describe(located)
        raise CommandError(f"{error}; {outcome.rows} rows scored", error.code) from None
    finally:
        batches.close()
        bar.close()
    if outcome.labeled and margins:
        m, y = np.concatenate(margins), np.concatenate(labels)
        w = None
        if any(x is not None for x in weights):
            w = np.concatenate(
                [
                    np.ones(b.shape[0]) if x is None else x
                    for b, x in zip(margins, weights, strict=True)
                ]
            )
        losses = _weighted(log_losses(m, y), w)
        total_weight = float(y.shape[0] if w is None else w.sum())
        outcome.log_loss = float(losses.sum() / total_weight) if total_weight > 0 else math.nan
        area = auc(m, y)
        outcome.auc = math.nan if area is None else area  # None: a single class
    elif not margins:
        outcome.labeled = False
    outcome.seconds = time.perf_counter() - start
    return outcome


def load_model(path: str) -> OnlineLogisticRegression:
    from optim import AdaserveError, OnlineLogisticRegression

    if not os.path.isfile(path):
        raise CommandError(f"--model {path}: does not exist", EXIT_FAILURE)
    try:
        return OnlineLogisticRegression.load(path)
    except AdaserveError as error:
        raise CommandError(f"--model {path}: {error}") from None


def run_predict(args: Any) -> int:
    """``adaserve predict``: the arguments of :func:`service.cli.build_parser`."""
    check_inputs([args.file])
    check_output(args.output)
    model = load_model(args.model)
    if args.output is None or args.output == STDIN:
        outcome = predict(
            args.file,
            model,
            args.format,
            sys.stdout,
            use_labels=not args.no_labels,
            quiet=args.quiet,
        )
        sys.stdout.flush()
    else:
        try:
            with _atomic_output(args.output, "w") as out:
                outcome = predict(
                    args.file,
                    model,
                    args.format,
                    out,
                    use_labels=not args.no_labels,
                    quiet=args.quiet,
                )
        except OSError as error:
            raise CommandError(f"--output {args.output}: {error}", EXIT_FAILURE) from None
    rate = outcome.rows / outcome.seconds if outcome.seconds > 0 else math.nan
    summary = f"rows {outcome.rows}  seconds {outcome.seconds:.3f}  rows/s {rate:.0f}"
    if outcome.labeled:
        summary += f"\nlog-loss {outcome.log_loss:.6f}  AUC {outcome.auc:.6f}"
    elif not args.no_labels and outcome.rows:
        summary += "\n(some rows have no label: no metrics)"
    print(summary, file=sys.stderr)
    return EXIT_OK


def run(command: Callable[[Any], int], args: Any) -> int:
    """Run a command, turning :class:`CommandError` and I/O errors into a message and exit code."""
    name = f"adaserve {args.command}"
    try:
        return command(args)
    except CommandError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return error.code
    except BrokenPipeError:  # `adaserve predict ... | head`
        with suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the flush at exit
        return EXIT_OK
    except OSError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


__all__ = [
    "CommandError",
    "ProgressTable",
    "TrainOutcome",
    "build_model",
    "parse_param",
    "predict",
    "run",
    "run_predict",
    "run_train",
    "train",
]
