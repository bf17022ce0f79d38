"""``adaserve compare FILE --optimizers adagrad,rmsprop,adam,ftrl``: optimizers side by side.

The file is parsed once; every batch is learned by one in-process model per optimizer, in the same
order (what ``POST /v1/experiments/{name}/stream`` does over HTTP). The result is a leaderboard
(progressive log-loss, recent AUC, calibration), the loss curves, and histograms of the effective
learning rates over touched coordinates, written as a self-contained HTML page (the figure is
embedded) and as a PNG. matplotlib draws the figure (``pip install 'adaserve[report]'``).
"""

from __future__ import annotations

import base64
import html
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def compare(
    files: Sequence[str | Path],
    fmt: str,
    optimizers: Sequence[dict[str, Any]],
    *,
    dim: int,
    lazy: str = "exact",
    hash_seed: int = 0,
) -> list[dict[str, Any]]:
    """Learn ``files`` with one model per optimizer; each member's standing, curve and rates."""
    # optim (numba) is imported when the command runs, not for `adaserve --help`
    from optim import OnlineLogisticRegression
    from optim.formats import iter_file_batches

    models = [
        OnlineLogisticRegression(o, dim=dim, lazy=lazy, hash_seed=hash_seed) for o in optimizers
    ]
    seconds = [0.0] * len(models)
    for path in files:
        for batch in iter_file_batches(path, fmt, dim=dim, hash_seed=hash_seed):
            for i, model in enumerate(models):
                start = time.perf_counter()
                model.learn_batch(batch)
                seconds[i] += time.perf_counter() - start
    members = []
    for model, spent in zip(models, seconds, strict=True):
        metrics = model.metrics.to_dict()
        summary = model.rate_summary(top=10, bins=30)
        touched = np.flatnonzero(model.times_touched[: model.dim])
        rates = model.state_arrays()["effective_learning_rate"][touched] if touched.size else []
        members.append({
            "optimizer": model.config["optimizer"],
            "label": label(model.config["optimizer"]),
            "rows": metrics["rows"],
            "log_loss": metrics["overall"]["log_loss"],
            "recent_log_loss": metrics["recent"]["log_loss"],
            "auc": metrics["recent"]["auc"],
            "calibration": metrics["overall"]["calibration"],
            "rows_per_second": metrics["rows"] / spent if spent else None,
            "curve": metrics["curve"],
            "rates": np.asarray(rates),
            "top_rates": summary["top_by_effective_learning_rate"],
        })  # fmt: skip
    members.sort(key=lambda m: (m["log_loss"] is None, m["log_loss"] or 0.0))
    return members


def label(optimizer: dict[str, Any]) -> str:
    extras = ", ".join(f"{k}={v}" for k, v in optimizer.items() if k != "name")
    return f"{optimizer['name']}({extras})" if extras else optimizer["name"]


def figure_png(members: list[dict[str, Any]], title: str) -> bytes:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError(
            "the report's figure needs matplotlib: pip install 'adaserve[report]'"
        ) from exc
    fig, (curves, rates) = plt.subplots(1, 2, figsize=(13, 5))
    for member in members:
        points = np.array(member["curve"]) if member["curve"] else np.zeros((0, 2))
        curves.plot(points[:, 0], points[:, 1], label=member["label"], linewidth=1.4)
        positive = member["rates"][member["rates"] > 0]
        if positive.size:
            bins = np.logspace(np.log10(positive.min()), np.log10(positive.max()) + 1e-9, 40)
            rates.hist(positive, bins=bins, histtype="step", label=member["label"], linewidth=1.4)
    curves.set(xlabel="rows", ylabel="progressive log-loss per block", title="Loss curves")
    rates.set(xscale="log", xlabel="effective learning rate", ylabel="touched coordinates",
              title="Effective learning rates")  # fmt: skip
    for axis in (curves, rates):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def report_html(members: list[dict[str, Any]], title: str, png: bytes) -> str:
    def cell(value: Any, digits: int = 5) -> str:
        return (
            "—"
            if value is None
            else f"{value:.{digits}f}"
            if isinstance(value, float)
            else str(value)
        )

    rows = "\n".join(
        f"<tr><td>{rank}</td><td>{html.escape(m['label'])}</td><td>{m['rows']:,}</td>"
        f"<td>{cell(m['log_loss'])}</td><td>{cell(m['recent_log_loss'])}</td>"
        f"<td>{cell(m['auc'], 4)}</td><td>{cell(m['calibration'], 3)}</td>"
        f"<td>{cell(m['rows_per_second'], 0)}</td></tr>"
        for rank, m in enumerate(members, 1)
    )
    image = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:nth-child(2){{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Leaderboard (lowest progressive log-loss first)</h2>
<table><tr><th>#</th><th>optimizer</th><th>rows</th><th>log-loss</th><th>recent log-loss</th>
<th>recent AUC</th><th>calibration</th><th>rows/s</th></tr>
{rows}
</table>
<h2>Loss curves and effective learning rates</h2>
<img alt="loss curves and rate histograms" src="data:image/png;base64,{image}">
</body></html>
"""


def write_report(members: list[dict[str, Any]], output: Path, title: str) -> tuple[Path, Path]:
    """Write ``output`` (HTML, self-contained) and the same figure beside it as PNG."""
    png = figure_png(members, title)
    png_path = output.with_suffix(".png")
    png_path.write_bytes(png)
    output.write_text(report_html(members, title, png))
    return output, png_path


def add_command(commands: Any) -> None:
    """``adaserve compare`` on the CLI's subcommands."""
    parser = commands.add_parser(
        "compare", help="learn a file with several optimizers; write an HTML report and a PNG"
    )
    parser.add_argument("files", nargs="+", help="text files (libsvm, vw, criteo, ndjson; .gz ok)")
    parser.add_argument("--format", required=True, choices=["libsvm", "vw", "criteo", "ndjson"])
    parser.add_argument(
        "--optimizers", default="adagrad,rmsprop,adam,ftrl",
        help="comma-separated optimizer names, each with its defaults (default: %(default)s)",
    )  # fmt: skip
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--dim", type=int)
    size.add_argument("--hash-bits", type=int)
    parser.add_argument("--lazy", choices=["exact", "frozen"], default="exact")
    parser.add_argument("--hash-seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("compare.html"))
    parser.set_defaults(run=run)


def run(args: Any) -> int:
    from optim import AdaserveError

    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    dim = args.dim if args.dim is not None else 2**args.hash_bits
    try:
        members = compare(args.files, args.format, [{"name": n} for n in names], dim=dim,
                          lazy=args.lazy, hash_seed=args.hash_seed)  # fmt: skip
        title = f"adaserve compare: {', '.join(map(str, args.files))} ({args.format})"
        html_path, png_path = write_report(members, args.output, title)
    except AdaserveError as exc:
        print(f"adaserve compare: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        print(f"adaserve compare: {exc}", file=sys.stderr)
        return 1
    for rank, member in enumerate(members, 1):
        loss = member["log_loss"]
        print(f"{rank}. {member['label']:<40} log-loss {loss if loss is None else f'{loss:.5f}'}")
    print(f"report: {html_path}  figure: {png_path}")
    return 0
