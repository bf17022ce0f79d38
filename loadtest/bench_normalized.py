"""Rows/s cost of normalized and importance-invariant updates against the plain ones, same run.

    python loadtest/bench_normalized.py                  # 100k click rows, 7 rounds
    python loadtest/bench_normalized.py --rows 20000 --rounds 3

The click stream of ``bench_learners.py`` (``make_clicks.py --format libsvm``, parsed once into one
validated Batch), every kernel warmed first; then rounds of one ``learn_batch`` pass per form on a
fresh model, the forms of an optimizer back to back in a shuffled order each round. Each form's
median rows/s, and its median over the rounds of the paired ratio to the plain form's pass of the
same round (pairing keeps the ratio meaningful when the shared machine's speed drifts).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from bench_learners import generate, locate_shared, parse_libsvm  # noqa: E402

from optim import OnlineLogisticRegression  # noqa: E402
from optim.batch import Batch  # noqa: E402

# (optimizer, lazy) -> the update forms timed for it; the first is the plain baseline.
FORMS = {
    ("adagrad", "exact"): ({}, {"normalized": True}, {"invariant": True},
                           {"normalized": True, "invariant": True}),
    ("sgd", "exact"): ({}, {"normalized": True}, {"normalized": True, "invariant": True}),
    ("ftrl", "exact"): ({}, {"normalized": True}),
    ("adam", "exact"): ({}, {"normalized": True}),
    ("momentum", "exact"): ({}, {"normalized": True}),
}  # fmt: skip


def label(form: dict[str, bool]) -> str:
    return "+".join(form) or "plain"


def seconds_of(optimizer: str, lazy: str, form: dict[str, bool], batch: Batch) -> float:
    model = OnlineLogisticRegression(optimizer, dim=batch.dim, lazy=lazy, **form)
    start = time.perf_counter()
    model.learn_batch(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--bits", type=int, default=20)
    parser.add_argument("--shared", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = generate(locate_shared(args.shared), args.rows, 7, args.bits, Path(folder))
        X, y = parse_libsvm(data.path, data.dim)
    batch = Batch.from_scipy(X, y, dim=X.shape[1], require_labels=True)
    small = Batch.from_scipy(X[:200], y[:200], dim=X.shape[1], require_labels=True)
    for (optimizer, lazy), forms in FORMS.items():
        for form in forms:
            OnlineLogisticRegression(optimizer, dim=small.dim, lazy=lazy, **form).learn_batch(small)
    seconds: dict[tuple[str, str, str], list[float]] = {}
    ratios: dict[tuple[str, str, str], list[float]] = {}
    shuffle = random.Random(0)
    for _ in range(args.rounds):
        for (optimizer, lazy), forms in FORMS.items():
            order = list(forms)
            shuffle.shuffle(order)
            times = {label(form): seconds_of(optimizer, lazy, form, batch) for form in order}
            for name, value in times.items():
                seconds.setdefault((optimizer, lazy, name), []).append(value)
                ratios.setdefault((optimizer, lazy, name), []).append(times["plain"] / value)
    print(f"{batch.n_rows:,} click rows ({batch.nnz:,} non-zeros, dim 2**{args.bits}), "
          f"{args.rounds} rounds, medians\n")  # fmt: skip
    print("| optimizer | lazy | form | rows/s | rows/s vs plain (paired) |")
    print("|---|---|---|---:|---:|")
    for (optimizer, lazy, name), values in seconds.items():
        rate = batch.n_rows / statistics.median(values)
        ratio = statistics.median(ratios[(optimizer, lazy, name)])
        print(f"| {optimizer} | {lazy} | {name} | {rate:,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
