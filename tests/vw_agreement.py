"""Progressive log-loss of ours and of Vowpal Wabbit on the same rows, coordinate for coordinate.

VW reads each row as ``|f j:x ...`` with ``j`` our coordinate (numeric feature names: VW adds one
namespace hash, so distinct coordinates stay distinct), labels as -1/+1; its progressive
prediction is the one its ``learn`` makes before the update. Also run as a script (the figures in
the report): ``python tests/vw_agreement.py``.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from datasets import MAKE_CLICKS, SHARED_DATA

from optim import OnlineLogisticRegression
from optim.formats import iter_file_batches
from optim.formats.stream import concat_batches

# Our configurations equal to VW's: "--adaptive --normalized" and its default (adaptive,
# normalized, invariant), both at VW's default learning rate 0.5.
EQUIVALENTS = {
    "--adaptive --normalized": {"normalized": True, "invariant": False},
    "": {"normalized": True, "invariant": True},
}
VW_LR = 0.5
HASH_BITS = 18  # for named features (rcv1, click logs)
CLICKS_TOOL = MAKE_CLICKS


def rows_of(path: Path, fmt: str, dim: int) -> tuple[sp.csr_array, np.ndarray]:
    batch = concat_batches(list(iter_file_batches(path, fmt, dim=dim)), dim)
    X = sp.csr_array((batch.values, batch.indices, batch.indptr), shape=(batch.n_rows, dim))
    return X, batch.labels


def click_rows(rows: int = 20_000, seed: int = 3) -> tuple[sp.csr_array, np.ndarray]:
    """``make_clicks.py --format vw-named``: raw integer counts, as click logs reach VW."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clicks.vw"
        with path.open("wb") as out:
            subprocess.run(
                [sys.executable, str(CLICKS_TOOL), "--format", "vw-named", "--rows", str(rows),
                 "--seed", str(seed)],
                stdout=out, stderr=subprocess.DEVNULL, check=True,
            )  # fmt: skip
        return rows_of(path, "vw", 2**HASH_BITS)


def progressive_log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(probabilities, 1e-15, 1 - 1e-15)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


def vw_predictions(X: sp.csr_array, labels: np.ndarray, options: str) -> np.ndarray:
    """VW's progressive prediction of each row (before it learns the row): its margin, clipped
    to [-50, 50] as VW clips logistic predictions, or with ``--link logistic`` a probability."""
    from vowpalwabbit import Workspace

    bits = max(18, math.ceil(math.log2(X.shape[1] + 1)) + 2)
    ws = Workspace(f"--loss_function logistic --quiet -b {bits} {options}")
    predictions = np.empty(X.shape[0])
    try:
        for i in range(X.shape[0]):
            start, stop = X.indptr[i], X.indptr[i + 1]
            features = " ".join(
                f"{j}:{x!r}"
                for j, x in zip(
                    X.indices[start:stop].tolist(), X.data[start:stop].tolist(), strict=True
                )
            )
            example = ws.example(f"{1 if labels[i] > 0 else -1} |f {features}")
            ws.learn(example)
            predictions[i] = example.get_simplelabel_prediction()
            ws.finish_example(example)
    finally:
        ws.finish()
    return predictions


def vw_log_loss(X: sp.csr_array, labels: np.ndarray, options: str) -> float:
    return progressive_log_loss(vw_predictions(X, labels, f"--link logistic {options}"), labels)


def vw_skips(margins: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows VW learns nothing from: its update is taken only when the loss is above 0, and
    ``log(1 + exp(-m))`` in float32 is 0 once ``exp(-m)`` is below half float32's epsilon (a
    margin right by more than about 16.6)."""
    right = np.where(labels > 0, margins, -margins)
    return np.log(np.float32(1) + np.exp(-right).astype(np.float32)) == 0  # VW's sum, in float32


def our_log_loss(X: sp.csr_array, labels: np.ndarray, optimizer: object, **config: object) -> float:
    model = OnlineLogisticRegression(optimizer, dim=X.shape[1], **config)
    return progressive_log_loss(model.learn(X, labels).probabilities, labels)


def shared_sets(data: Path) -> dict[str, tuple[sp.csr_array, np.ndarray]]:
    return {
        "a9a": rows_of(data / "a9a" / "a9a", "libsvm", 124),
        "agaricus": rows_of(data / "agaricus" / "agaricus.txt.train", "libsvm", 127),
        "rcv1": rows_of(data / "rcv1" / "rcv1_small.dat", "vw", 2**HASH_BITS),
    }


def main() -> None:
    data = SHARED_DATA
    sets = shared_sets(data)
    sets["make_clicks vw-named 20k seed 3"] = click_rows()
    adagrad = {"name": "adagrad", "lr": VW_LR}
    print("| data | rows | VW --adaptive --normalized | ours normalized AdaGrad | VW default |"
          " ours normalized+invariant AdaGrad | ours plain AdaGrad lr 0.01 |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (X, y) in sets.items():
        figures = []
        for options, config in EQUIVALENTS.items():
            figures += [vw_log_loss(X, y, options), our_log_loss(X, y, adagrad, **config)]
        figures.append(our_log_loss(X, y, "adagrad"))
        print(f"| {name} | {X.shape[0]:,} | " + " | ".join(f"{f:.4f}" for f in figures) + " |")


if __name__ == "__main__":
    main()
