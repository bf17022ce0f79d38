"""Where plain AdaGrad and VW ``--adaptive`` part on the crossed click log, and by how much.

    python loadtest/bench_vw_gap.py --rows 200000     # the table in REPORT_NAMES_CROSSES.md

The crossed click log of issue 20 (``make_clicks.py --crosses 2``, C1..C10 in namespace ``x``,
raw counts in ``I``), one pass each with no ``-q``, ``-q xx`` and ``-q CC``, ``-b 22``: our
AdaGrad lr 0.1 and VW ``--adaptive -l 0.1 --power_t 0.5 --initial_t 0`` (its ``-p`` margins).
For each: our progressive log-loss as our metrics give it and scored as VW scores its own
(margins clipped to [-50, 50]); VW's; the rows VW learned nothing from (its update is taken only
when its float32 loss is above 0: :func:`vw_agreement.vw_skips`); and both sides again over the
file without those rows. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import harness  # noqa: F401 - first: this checkout's code on sys.path
import numpy as np
import peers
from bench_parse import crossed_clicks
from harness import locate_shared

from optim import OnlineLogisticRegression
from optim.features import FeatureOptions
from optim.formats import iter_file_batches
from optim.metrics import log_losses

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from vw_agreement import vw_skips

BITS = 22
OPTIONS = {"none": (), "-q xx": ("xx",), "-q CC": ("CC",)}


def ours(path: Path, interactions: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Our AdaGrad lr 0.1 over the file: each row's progressive margin, and the labels."""
    model = OnlineLogisticRegression({"name": "adagrad", "lr": 0.1}, hash_bits=BITS)
    margins, labels = [], []
    features = FeatureOptions.of(interactions)
    for batch in iter_file_batches(path, "vw", dim=2**BITS, features=features):
        margins.append(model.learn_batch(batch).margins)
        labels.append(batch.labels)
    return np.concatenate(margins), np.concatenate(labels)


def loss(margins: np.ndarray, labels: np.ndarray, clip: bool = True) -> float:
    if clip:
        margins = np.clip(margins, -peers.LOGIT_CLIP, peers.LOGIT_CLIP)
    return float(np.mean(log_losses(margins, labels)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--shared", default=None, help="the shared dir (default ../shared)")
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "adaserve-parse")
    args = ap.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    make_clicks = locate_shared(args.shared) / "tools" / "make_clicks.py"
    path = crossed_clicks(make_clicks, args.rows, args.data_dir)
    print(
        "| `-q` | ours, own metric | ours, clipped as VW | VW `--adaptive` | rows VW skips | "
        "without them: ours (clipped) | VW | rows |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for option, interactions in OPTIONS.items():
        vw_args = " ".join([peers.VW_ADAGRAD, *(f"-q {q}" for q in interactions)])
        mine, labels = ours(path, interactions)
        _, theirs = peers.vw_progressive(str(path), vw_args, bits=BITS)
        skipped = vw_skips(theirs, labels)
        with tempfile.TemporaryDirectory() as tmp:
            kept = Path(tmp) / "kept.vw"
            with open(path, "rb") as f, open(kept, "wb") as out:
                out.writelines(line for line, skip in zip(f, skipped, strict=True) if not skip)
            mine_kept, labels_kept = ours(kept, interactions)
            _, theirs_kept = peers.vw_progressive(str(kept), vw_args, bits=BITS)
        print(
            f"| {option} | {loss(mine, labels, clip=False):.4f} | {loss(mine, labels):.4f} | "
            f"{loss(theirs, labels):.4f} | {int(skipped.sum()):,} | "
            f"{loss(mine_kept, labels_kept):.4f} | {loss(theirs_kept, labels_kept):.4f} | "
            f"{labels.size:,} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
