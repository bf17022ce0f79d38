"""Parse speed of each input format: CPU time of the compiled parsers over generated click logs.

    PYTHONPATH=. python loadtest/bench_parse.py                  # 100,000 rows, 5 runs a format
    PYTHONPATH=. python loadtest/bench_parse.py --rows 20000 --runs 3

``make_clicks.py`` (``../shared/tools``) writes the same click rows as Criteo TSV, as libsvm
(``--bits 20``) and as VW text with named features; the NDJSON file is the libsvm rows as
``{"indices", "values", "label"}`` lines. Each file is parsed from memory in 1 MiB chunks by
:class:`optim.formats.StreamParser` (10,000-row batches) after a warm-up run; the JSON CSR reader
reads a body of the first 1,000 rows, and predict's fused path scores a one-row body. Then the cost
of interactions: the click log made with ``--crosses 2`` as VW text with C1..C10 in namespace
``x`` (issue 20's recipe), parsed plain, with ``-q xx`` (55 crosses a row) and with ``-q CC``;
the cost per crossed feature is the extra CPU time over the crosses generated; and rows/s parsing
and learning that file with each option, ours (as ``adaserve train`` reads a file) against VW's
own driver with the same update and ``-q`` (``--crosses-only``: just these). Times are
CPU seconds of this process (``time.process_time``), which move less than wall time on a shared
machine; the median and the minimum of the runs are printed. Nothing is written but the
generated files (in ``--data-dir``, reused by later runs).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import harness  # first: this checkout's code on sys.path
import orjson
import peers

from optim import OnlineLogisticRegression
from optim.features import FeatureOptions
from optim.formats import StreamParser
from optim.formats.json_csr import read_csr, scores_of_json

# the shared tools live beside the repository
MAKE_CLICKS = Path(__file__).resolve().parents[2] / "shared" / "tools" / "make_clicks.py"
DIM = 1 << 20
CHUNK = 1 << 20
SOURCES = {"criteo": ("criteo", "clicks.tsv"), "libsvm": ("libsvm", "clicks.libsvm"),
           "vw": ("vw-named", "clicks.vw")}  # fmt: skip


def generate(make_clicks: Path, rows: int, data_dir: Path) -> dict[str, Path]:
    """The click log in every format (made once per row count)."""
    files = {}
    for fmt, (flavour, name) in SOURCES.items():
        path = data_dir / f"{rows}.{name}"
        if not path.exists():
            partial = path.with_suffix(".partial")
            with partial.open("wb") as out:
                subprocess.run(
                    [sys.executable, str(make_clicks), "--rows", str(rows), "--seed", "3",
                     "--format", flavour, "--bits", "20"],
                    stdout=out, stderr=subprocess.DEVNULL, check=True,
                )  # fmt: skip
            partial.rename(path)
        files[fmt] = path
    ndjson = data_dir / f"{rows}.clicks.ndjson"
    if not ndjson.exists():
        lines = []
        for line in files["libsvm"].read_bytes().splitlines():
            label, *pairs = line.split()
            index_values = [pair.split(b":") for pair in pairs]
            row = {
                "indices": [int(index) for index, _ in index_values],
                "values": [float(value) for _, value in index_values],
                "label": int(label == b"1"),
            }
            lines.append(orjson.dumps(row))
        ndjson.write_bytes(b"\n".join(lines) + b"\n")
    files["ndjson"] = ndjson
    return files


def parse_all(
    fmt: str, data: bytes, features: FeatureOptions | None = None, max_names: int = 1_000_000
) -> int:
    """Rows parsed (with ``features``: the non-zeros generated, crosses included)."""
    parser = StreamParser(
        fmt, dim=DIM, max_rows_per_batch=10_000, features=features, max_names=max_names
    )
    view = memoryview(data)
    batches = [
        b for start in range(0, len(data), CHUNK) for b in parser.feed(view[start : start + CHUNK])
    ]
    batches += parser.finish()
    if features is not None:
        return sum(b.nnz for b in batches)
    return sum(b.n_rows for b in batches)


def crossed_clicks(make_clicks: Path, rows: int, data_dir: Path) -> Path:
    """The ``--crosses 2`` click log as VW text, C1..C10 moved to namespace ``x`` (made once per
    row count, a line at a time: a million rows are 400 MB); what make_clicks prints on stderr
    (the Bayes log-loss) beside it, in ``.log``."""
    path = data_dir / f"{rows}.crosses.vw"
    if path.exists():
        return path
    x_columns = {f"C{j}".encode() for j in range(1, 11)}
    partial = path.with_suffix(".partial")
    with path.with_suffix(".log").open("wb") as stderr, subprocess.Popen(
        [sys.executable, str(make_clicks), "--rows", str(rows), "--seed", "3",
         "--format", "vw-named", "--crosses", "2"],
        stdout=subprocess.PIPE, stderr=stderr,  # its Bayes log-loss, read by bench_quality
    ) as made, partial.open("wb") as out:  # fmt: skip
        assert made.stdout is not None
        for line in made.stdout:
            head, _, categorical = line.rstrip(b"\n").partition(b" |C ")
            tokens = categorical.split()
            x = [t for t in tokens if t.split(b"=")[0] in x_columns]
            rest = [t for t in tokens if t.split(b"=")[0] not in x_columns]
            out.write(b"%s |x %s |C %s\n" % (head, b" ".join(x), b" ".join(rest)))
    if made.returncode != 0:
        raise subprocess.CalledProcessError(made.returncode, made.args)
    partial.rename(path)
    return path


def crosses_section(path: Path, runs: int) -> None:
    data = path.read_bytes()
    plain = cpu_seconds(lambda: parse_all("vw", data), runs)
    rows = parse_all("vw", data)
    base_nnz = parse_all("vw", data, FeatureOptions())
    print(f"\ninteractions, {rows:,} rows of {path.name} (C1..C10 in namespace x)")
    print(f"{'option':24} {'rows/s (median)':>16} {'crosses/row':>12} {'ns/cross':>10}")
    print(f"{'none':24} {rows / statistics.median(plain):16,.0f} {0:12.1f} {'':>10}")
    for option in (["xx"], ["CC"]):
        features = FeatureOptions.of(option)
        nnz = parse_all("vw", data, features)
        times = cpu_seconds(lambda f=features: parse_all("vw", data, f), runs)
        crosses = nnz - base_nnz  # (non-zeros after duplicates are summed: a lower bound)
        per_cross = (statistics.median(times) - statistics.median(plain)) / crosses * 1e9
        print(f"{'-q ' + option[0]:24} {rows / statistics.median(times):16,.0f} "
              f"{crosses / rows:12.1f} {per_cross:10.1f}")  # fmt: skip


# Ours (model settings) and VW's flags for the same update, for rows/s with and without crosses.
LEARNERS = {
    "AdaGrad lr 0.1": ({"optimizer": {"name": "adagrad", "lr": 0.1}}, peers.VW_ADAGRAD),
    "VW's default update": (
        {"optimizer": {"name": "adagrad", "lr": 0.5}, "normalized": True, "invariant": True},
        peers.VW_DEFAULT,
    ),
}
CROSS_OPTIONS = {"none": (), "-q xx": ("xx",), "-q CC": ("CC",)}


def learn_all(data: bytes, settings: dict, interactions: tuple[str, ...]) -> int:
    """Parse and learn the VW text as ``adaserve train`` does (1 MiB chunks, 10,000-row
    batches, names recorded): the rows learned."""
    model = OnlineLogisticRegression(**settings, dim=DIM, interactions=list(interactions))
    parser = StreamParser("vw", dim=DIM, max_rows_per_batch=10_000, features=model.features)
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        model.learn_batches(parser.feed(view[start : start + CHUNK]))
    model.learn_batches(parser.finish())
    return model.step


def vw_learn_all(path: Path, args: str, interactions: tuple[str, ...]) -> None:
    """VW's own driver over the file, one pass (its parser on a second thread)."""
    import vowpalwabbit

    crosses = " ".join(f"-q {q}" for q in interactions)
    vowpalwabbit.Workspace(f"-d {path} {peers.VW_BASE} {args} {crosses}").finish()


def learn_section(path: Path, runs: int) -> None:
    """Rows/s parsing and learning the crossed file, ours against VW's driver with the same
    update and ``-q``: wall and CPU seconds, medians of ``runs`` passes taken in turn (ours,
    VW, next configuration) so both see the same machine load."""
    data = path.read_bytes()
    with_vw = harness.installed("vowpalwabbit")
    work: dict[tuple[str, str, str], Callable[[], object]] = {}
    for option, interactions in CROSS_OPTIONS.items():
        for name, (settings, vw_args) in LEARNERS.items():
            work[option, name, "ours"] = lambda s=settings, q=interactions: learn_all(data, s, q)
            if with_vw:
                work[option, name, "VW"] = lambda a=vw_args, q=interactions: vw_learn_all(
                    path, a, q
                )
    rows = learn_all(data, LEARNERS["AdaGrad lr 0.1"][0], ())  # (also the warm-up)
    for run in work.values():
        run()
    wall: dict[tuple[str, str, str], list[float]] = {key: [] for key in work}
    cpu: dict[tuple[str, str, str], list[float]] = {key: [] for key in work}
    for _ in range(runs):
        for key, run in work.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
    print(f"\nparse + learn, {rows:,} rows of {path.name}, median of {runs} (wall; CPU)")
    print(f"{'option':8} {'update':20} {'ours rows/s':>22} {'VW rows/s':>22} {'ours/VW':>14}")
    for option, name, side in work:
        if side != "ours":
            continue
        ours = (rows / statistics.median(wall[option, name, "ours"]),
                rows / statistics.median(cpu[option, name, "ours"]))  # fmt: skip
        vw = (rows / statistics.median(wall[option, name, "VW"]),
              rows / statistics.median(cpu[option, name, "VW"])) if with_vw else None  # fmt: skip
        shown = f"{vw[0]:10,.0f}; {vw[1]:10,.0f}" if vw else f"{'not installed':>22}"
        ratio = f"{ours[0] / vw[0]:6.2f}; {ours[1] / vw[1]:5.2f}" if vw else ""
        print(f"{option:8} {name:20} {ours[0]:10,.0f}; {ours[1]:10,.0f} {shown} {ratio:>14}")


def cpu_seconds(work: Callable[[], object], runs: int, repeat: int = 1) -> list[float]:
    """CPU seconds of ``work`` per call: ``runs`` measurements of ``repeat`` calls each."""
    work()  # warm-up: the compiled code is loaded (or compiled) here
    times = []
    for _ in range(runs):
        start = time.process_time()
        for _ in range(repeat):
            work()
        times.append((time.process_time() - start) / repeat)
    return times


def csr_body(libsvm: Path, rows: int) -> tuple[bytes, bytes]:
    """A JSON CSR body of the first ``rows`` rows of the libsvm file (with labels), and one of
    its first row alone (features only, as predict takes it)."""
    indptr, indices, values, labels = [0], [], [], []
    for line in libsvm.read_bytes().splitlines()[:rows]:
        label, *pairs = line.split()
        for pair in pairs:
            index, value = pair.split(b":")
            indices.append(int(index))
            values.append(float(value))
        indptr.append(len(indices))
        labels.append(int(label == b"1"))
    body = {"indptr": indptr, "indices": indices, "values": values, "labels": labels}
    one = {"indptr": [0, indptr[1]], "indices": indices[: indptr[1]], "values": values[: indptr[1]]}
    return orjson.dumps(body), orjson.dumps(one)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "adaserve-parse")
    ap.add_argument(
        "--make-clicks", type=Path, default=MAKE_CLICKS, help=f"(default {MAKE_CLICKS})"
    )
    ap.add_argument(
        "--crosses-only", action="store_true", help="only the interactions (parse, learn)"
    )
    args = ap.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    if not args.crosses_only:  # the formats, JSON bodies and predict
        files = generate(args.make_clicks, args.rows, args.data_dir)
        print(f"{'format':24} {'rows/s (median)':>16} {'MB/s (median)':>14} {'rows/s (best)':>14}")
        for fmt, path in files.items():
            data = path.read_bytes()
            rows = parse_all(fmt, data)
            # names are recorded by default; "names off" (max_names=0) shows what recording costs
            for label, names in ((fmt, 1_000_000), (f"{fmt} (names off)", 0)):
                if names == 0 and fmt in ("libsvm", "ndjson"):
                    continue  # no names in these files
                times = cpu_seconds(
                    lambda f=fmt, d=data, n=names: parse_all(f, d, None, n), args.runs
                )
                median = statistics.median(times)
                print(f"{label:24} {rows / median:16,.0f} {len(data) / median / 1e6:14.1f} "
                      f"{rows / min(times):14,.0f}")  # fmt: skip
        body, one = csr_body(files["libsvm"], 1_000)
        times = cpu_seconds(lambda: read_csr(body), args.runs, repeat=50)
        print(f"{'JSON CSR, 1,000 rows':24} {statistics.median(times) * 1e6:13,.0f} us "
              f"{len(body) / statistics.median(times) / 1e6:14.1f}")  # fmt: skip
        model = OnlineLogisticRegression("adagrad", dim=DIM)
        assert scores_of_json(model, one, max_rows=10, max_nnz=1_000) is not None
        times = cpu_seconds(
            lambda: scores_of_json(model, one, max_rows=10, max_nnz=1_000), args.runs, repeat=5_000
        )
        print(f"{'predict fused, 1 row':24} {statistics.median(times) * 1e6:13.2f} us")
    crossed = crossed_clicks(args.make_clicks, args.rows, args.data_dir)
    crosses_section(crossed, args.runs)
    learn_section(crossed, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
