"""``adaserve train`` and ``adaserve predict``: the command-line front end over :mod:`optim`.

``train`` learns a model from text files in one pass (or ``--passes N``), as ``vw -d FILE``
does, with progressive validation: every row is scored before it is learned, and the table on
stderr shows the log-loss of those scores. It writes the model file that ``model.save`` writes
and the service imports (``POST /v1/models/{name}/import``). ``predict`` scores a file with a
saved model. No server is involved.

Inputs are read in chunks by :func:`optim.formats.iter_file_batches` (``.gz`` and ``.zst`` are
decompressed, ``-`` is stdin), so memory is the model's state plus one chunk and one batch, whatever
the file's size. A malformed line stops the run with its file, line number and reason; every row
before it has been learned (the parsers' atomicity), and the model file is written only when asked
to (``--save-partial``).

Exit codes: 0 done; 1 an I/O failure (unreadable input, unwritable output); 2 bad input (a
malformed line, a bad setting); 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from adaserve_cli import columnar
from adaserve_cli.columnar import FORMATS as COLUMNAR_FORMATS
from adaserve_cli.formats import FORMATS

if TYPE_CHECKING:  # optim (numba) is imported when a command runs, not for `adaserve --help`
    from optim import Batch, OnlineLogisticRegression
    from optim.features import FeatureOptions

# When the interpreter reached this module (``adaserve`` imports it first): the end of
# start-up's "interpreter" part in the summary's breakdown.
MODULE_LOADED = time.perf_counter()

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
STDIN = "-"


class CommandError(Exception):
    """Stops a command: a message for stderr and the exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------- options
INPUT_FORMATS = FORMATS + COLUMNAR_FORMATS  # and the columnar files of adaserve_cli.columnar
TRAIN_EPILOG = """\
examples:
  adaserve train clicks.libsvm.gz --format libsvm --hash-bits 20 --output clicks.npz  # auto
  adaserve train clicks.libsvm.gz --format libsvm --hash-bits 20 --optimizer adagrad --lr 0.1
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
        description="Learn a model from FILEs (- is stdin, .gz and .zst are decompressed) in one "
        "pass with progressive validation, and write the file the service imports.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("files", nargs="+", metavar="FILE", help="input files; - reads stdin")
    train.add_argument("--format", required=True, choices=INPUT_FORMATS, help="input format")
    train.add_argument(
        "--optimizer",
        default=None,
        help="optimizer name, or auto (the default): a portfolio predicting with the mixture "
        "of its members; --lr and --param need a name",
    )
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
    train.add_argument(
        "--normalized", action="store_true", help="normalized updates (VW's --normalized)"
    )
    train.add_argument(
        "--invariant",
        action="store_true",
        help="importance-invariant updates (sgd and adagrad; VW's default)",
    )
    train.add_argument(
        "--interactions",
        action="append",
        metavar="NS",
        help="cross the features of 2 or 3 namespaces, e.g. ab (VW's -q ab; repeatable; -q is"
        " --quiet here)",
    )
    train.add_argument("--ignore", action="append", metavar="N", help="leave out namespace N")
    train.add_argument("--keep", action="append", metavar="N", help="keep only namespace N")
    train.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    train.add_argument("--output", "-o", help="model file to write (.npz, as the service exports)")
    train.add_argument(
        "--save-partial",
        action="store_true",
        help="after a malformed line, still write the rows learned before it",
    )
    train.add_argument("--passes", type=_positive, default=1, help="passes over the input")
    train.add_argument(
        "--holdout-every",
        type=int,
        default=0,
        metavar="K",
        help="hold out every K-th row (as vw --holdout_period; counted over every row read, "
        "across files and passes): scored, not learned, reported as holdout log-loss and AUC",
    )
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
    """A binary handle on a path (``.gz`` and ``.zst`` decompressed) or ``-`` (stdin, as is)."""
    if source == STDIN:
        yield _CountingReader(sys.stdin.buffer, on_read)  # type: ignore[misc]
        return
    from optim.formats.compressed import COMPRESSED_SUFFIXES, DecompressedReader

    encoding = next((e for s, e in COMPRESSED_SUFFIXES.items() if source.endswith(s)), None)
    with open(source, "rb") as raw:
        counted = _CountingReader(raw, on_read)
        if encoding is None:
            yield counted  # type: ignore[misc]
        else:
            yield DecompressedReader(counted, encoding)  # type: ignore[misc, arg-type]


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
def _learned_losses(result: Any, batch: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The losses and weights of the rows of ``batch`` its ``result`` learned (not held out)."""
    if result.held_out is None:
        return result.losses, batch.weights
    learned = ~result.held_out
    return result.losses[learned], None if batch.weights is None else batch.weights[learned]


class ProgressTable:
    """The periodic table of ``train``: rows, progressive log-loss overall and since the last line.

    Lines come at rows 1, 2, 4, 8, ... (``every=None``, as VW prints) or every ``every`` rows,
    computed exactly at those rows from each batch's per-row losses (a batch is learned in one
    call; the line for row 1000 of a 10,000-row batch still shows the loss of rows 1..1000).
    ``rows/s`` is the throughput so far at that row: its rows over the time from ``start`` to
    when it was learned (within a batch, learned in one call of ``began`` to now, a row's time
    is interpolated by its place in the batch).
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

    def add(
        self, losses: np.ndarray, weights: np.ndarray | None, began: float | None = None
    ) -> None:
        """The per-row losses of a batch learned from ``began`` (default: now) to now."""
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
        now = time.perf_counter()
        began = now if began is None else began
        while self.next <= end:
            k = self.next - self.rows - 1
            learned_at = began + (now - began) * (k + 1) / n
            rate = self.next / max(learned_at - self.start, 1e-9)
            self._line(self.next, self.loss + cum_loss[k], self.weight + cum_weight[k], rate)
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
    # perf_counter times: the first batch handed over by the reader (read and parsed, its
    # kernels loaded) and learned (the learning kernels loaded)
    started: float = 0.0  # when learning began (the model built)
    first_parsed: float | None = None
    first_learned: float | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else math.nan


class _AtSource(Exception):
    """An error while reading ``where`` (a file, and the pass when there are several)."""

    def __init__(self, where: str, error: BaseException) -> None:
        super().__init__(f"{where}: {error}")
        self.where = where
        self.error = error


# The libsvm reader's refusal of an index beyond the model: "<index> is outside [0, <dim>)".
_INDEX_OUTSIDE = re.compile(r"^(\d+) is outside \[0, (\d+)\)")


def _describe(located: _AtSource, fmt: str | None = None) -> CommandError:
    """The message of an error met reading a source; with ``fmt`` (train), a libsvm index
    beyond the model's dim says what to pass instead."""
    from optim import AdaserveError
    from optim.formats.compressed import CompressedInputError

    error, where = located.error, located.where
    if isinstance(error, CompressedInputError):  # truncated, corrupt, or no zstandard
        return CommandError(f"{where}: {error}", EXIT_BAD_INPUT)
    if isinstance(error, AdaserveError):  # a malformed line: ParseError
        outside = _INDEX_OUTSIDE.match(getattr(error, "reason", ""))
        if fmt == "libsvm" and error.field == "index" and outside:
            index = int(outside.group(1))
            return CommandError(
                f"{where}: {error}. libsvm indices are coordinates as they are (not hashed): "
                f"the largest index met so far is {index}, so this file needs --dim "
                f"{index + 1} or more (--hash-bits {(index).bit_length()} holds it too)",
                EXIT_BAD_INPUT,
            )
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
    features: FeatureOptions | None = None,
) -> Generator[Batch, None, None]:
    """The batches of every source, ``passes`` times over; errors wrapped in :class:`_AtSource`."""
    from optim import AdaserveError
    from optim.formats import iter_file_batches
    from optim.formats.compressed import CompressedInputError

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
                        handle, fmt, dim=dim, hash_seed=hash_seed, require_labels=require_labels,
                        features=features,
                    )  # fmt: skip
            except (AdaserveError, OSError, CompressedInputError) as error:
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
    outcome = TrainOutcome(model, started=time.perf_counter())
    start = outcome.started if start is None else start
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
            on_read=on_read, features=model.features,
        )
    )  # fmt: skip
    try:
        for batch in batches:
            began = time.perf_counter()
            outcome.first_parsed = outcome.first_parsed or began
            result = model.learn_batch(batch)
            outcome.first_learned = outcome.first_learned or time.perf_counter()
            outcome.rows += batch.n_rows
            if table is not None:
                table.add(*_learned_losses(result, batch), began)
    except _AtSource as located:
        outcome.error = _describe(located, fmt)
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
    normalized: bool = False,
    invariant: bool = False,
    interactions: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    keep: Sequence[str] | None = None,
    holdout_every: int = 0,
) -> OnlineLogisticRegression:
    """The model of the command-line settings (a bad setting is a :class:`CommandError`)."""
    from optim import AdaserveError
    from optim.portfolio import new_model

    spec: dict[str, Any] = {"name": optimizer}
    if lr is not None:
        spec["lr"] = lr
    spec.update(params)
    try:
        return new_model(  # "auto": a portfolio (optim.portfolio)
            spec,
            dim,
            hash_bits=hash_bits,
            lazy=lazy,
            fit_intercept=fit_intercept,
            dtype=dtype,
            hash_seed=hash_seed,
            normalized=normalized,
            invariant=invariant,
            interactions=interactions,
            ignore=ignore,
            keep=keep,
            holdout_every=holdout_every,
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
    import optim.formats  # noqa: F401 - timed as imports: the model and the readers' modules

    imported = time.perf_counter()
    if args.optimizer is None and (args.lr is not None or args.param):
        raise CommandError(
            "--lr and --param set one optimizer's hyperparameters: give --optimizer too (the "
            "default, auto, has none to set)"
        )
    model = build_model(
        args.optimizer or "auto",
        args.param,
        lr=args.lr,
        dim=args.dim,
        hash_bits=args.hash_bits,
        lazy=args.lazy,
        fit_intercept=not args.no_intercept,
        dtype=args.dtype,
        hash_seed=args.hash_seed,
        normalized=args.normalized,
        invariant=args.invariant,
        interactions=args.interactions,
        ignore=args.ignore,
        keep=args.keep,
        holdout_every=args.holdout_every,
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
    startup = StartUp.measure(start, imported, outcome)
    unsaved = "no --output FILE given" if args.output is None else "stopped on an error"
    _print_summary(outcome, args.output if save else None, startup, unsaved)
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


@dataclass
class StartUp:
    """Where the time before the first learned row went, in seconds (None: not known)."""

    interpreter: float | None  # process start to adaserve's modules (Python, site, argparse)
    imports: float  # then to optim imported (numpy, numba, the model and the readers' modules)
    model: float  # the model built: its state allocated, its learning module loaded
    first_parsed: float | None  # the first batch read and parsed (the reader's kernels loaded)
    first_learned: float | None  # the first batch learned (the learning kernels loaded)

    @classmethod
    def measure(cls, command: float, imported: float, outcome: TrainOutcome) -> StartUp:
        """From the perf_counter times of the command's start, of optim imported, and of
        ``outcome``'s first batch (the model is built when the run's clock starts)."""
        process = process_start()
        built = outcome.started
        parsed, learned = outcome.first_parsed, outcome.first_learned
        return cls(
            None if process is None else MODULE_LOADED - process,
            imported - (MODULE_LOADED if process is not None else command),
            built - imported,
            None if parsed is None else parsed - built,
            None if parsed is None or learned is None else learned - parsed,
        )

    @property
    def total(self) -> float | None:
        """Process start (or, when unknown, adaserve's modules) to the first learned row."""
        if self.first_parsed is None or self.first_learned is None:
            return None
        return (
            (self.interpreter or 0.0)
            + self.imports
            + self.model
            + self.first_parsed
            + self.first_learned
        )

    def line(self) -> str:
        def s(value: float | None) -> str:
            return "?" if value is None else f"{value:.3f}"

        origin = "process start" if self.interpreter is not None else "adaserve's start"
        return (
            f"start-up    {s(self.total)} s from {origin} to the first learned row: "
            f"interpreter {s(self.interpreter)}, imports {s(self.imports)}, model "
            f"{s(self.model)}, first batch read+parsed {s(self.first_parsed)}, learned "
            f"{s(self.first_learned)}"
        )


def process_start() -> float | None:
    """When this process started, on the ``time.perf_counter`` clock (Linux: ``/proc``, to
    10 ms); None elsewhere."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # starttime, the 22nd field: clock ticks after boot
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        now = time.perf_counter()
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return now - (since_boot - ticks / os.sysconf("SC_CLK_TCK"))


def _holdout_line(model: OnlineLogisticRegression) -> str:
    """The summary's line of the rows held out: how many, their log-loss and AUC (of the last
    ``recent_window`` of them)."""
    holdout = model.holdout_metrics
    summary = holdout.to_dict()
    overall, recent = summary["overall"], summary["recent"]
    assert isinstance(overall, dict) and isinstance(recent, dict)

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.6f}"

    last = f" (AUC of the last {holdout.window})" if holdout.rows > holdout.window else ""
    loss, area = shown(overall["log_loss"]), shown(recent["auc"])
    return f"holdout     {holdout.rows} rows, log-loss {loss}, AUC {area}{last}"


def _print_summary(
    outcome: TrainOutcome,
    output: str | None,
    startup: StartUp | None = None,
    unsaved: str = "no --output FILE given",
) -> None:
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
    if model.holdout_every:
        lines.insert(3, _holdout_line(model))
    if output is not None:
        lines.append(f"model       {output} (step {model.step})")
    else:
        lines.append(f"model       not saved ({unsaved})")
    if startup is not None and startup.total is not None:  # a row was learned
        lines.append(startup.line())
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
            require_labels=False, features=model.features,
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
    from optim import AdaserveError
    from optim.portfolio import load_model as load_either

    if not os.path.isfile(path):
        raise CommandError(f"--model {path}: does not exist", EXIT_FAILURE)
    try:
        return load_either(path)
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
