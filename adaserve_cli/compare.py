"""``adaserve compare FILE --optimizers 'adagrad:lr=0.01,0.1,0.5' ftrl 'adam:lr=1e-3,1e-2'``.

Optimizers side by side, each with a grid of hyperparameters (``NAME[:KEY=V[,V...]]...``: every
combination of the listed values is a member; ``adagrad,rmsprop`` lists names with their
defaults). The file is parsed once; every batch is learned by one in-process model per member
(what ``POST /v1/experiments/{name}/stream`` does over HTTP), the members taking turns at going
first, with each member's compiled loops loaded before anything is timed. The result is a
leaderboard (progressive log-loss, recent AUC, calibration, rows/s), the loss curves and
histograms of the effective learning rates over touched coordinates, written as a self-contained
HTML page (the charts are inline SVG) and, when matplotlib is installed
(``pip install 'adaserve[report]'``), the same figure as a PNG beside it.
"""

from __future__ import annotations

import html
import io
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from optim import OnlineLogisticRegression


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
    warm_up(models)
    seconds = [0.0] * len(models)
    turn = 0
    for path in files:
        for batch in iter_file_batches(path, fmt, dim=dim, hash_seed=hash_seed):
            # Who goes first brings the batch into the CPU's caches: each member in turn.
            for i in [*range(turn, len(models)), *range(turn)]:
                start = time.perf_counter()
                models[i].learn_batch(batch)
                seconds[i] += time.perf_counter() - start
            turn = (turn + 1) % len(models)
    members = []
    for model, given, spent in zip(models, optimizers, seconds, strict=True):
        metrics = model.metrics.to_dict()
        summary = model.rate_summary(top=10, bins=30)
        touched = np.flatnonzero(model.times_touched[: model.dim])
        rates = model.state_arrays()["effective_learning_rate"][touched] if touched.size else []
        members.append({
            "optimizer": model.config["optimizer"],
            "label": label(given),
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


def warm_up(models: Sequence[OnlineLogisticRegression]) -> None:
    """Load (or compile) each member's loops on a one-row model of its configuration, so the
    first member's rows/s does not include it."""
    from optim import Batch, OnlineLogisticRegression

    batch = Batch.from_arrays([0, 1], [0], [1.0], [1], dim=2)
    for model in models:
        config = {**model.config, "dim": 2, "hash_bits": None}
        OnlineLogisticRegression(**config).learn_batch(batch)


def parse_optimizers(arguments: Sequence[str]) -> list[dict[str, Any]]:
    """Members from ``NAME[:KEY=V[,V...]]...`` arguments, one per combination of the values;
    an argument with commas and no ``:`` is a list of names (``adagrad,rmsprop``)."""
    members: list[dict[str, Any]] = []
    for argument in arguments:
        if ":" not in argument:
            members += [{"name": n.strip()} for n in argument.split(",") if n.strip()]
            continue
        name, *settings = argument.split(":")
        grid: dict[str, list[Any]] = {}
        for setting in settings:
            key, equals, values = setting.partition("=")
            if not equals or not key.strip() or not values.strip():
                raise ValueError(f"{argument!r}: expected NAME:KEY=V[,V...], got {setting!r}")
            grid[key.strip()] = [_number(v.strip()) for v in values.split(",")]
        for combination in itertools.product(*grid.values()):
            members.append({"name": name.strip(), **dict(zip(grid, combination, strict=True))})
    if not members:
        raise ValueError("no optimizer given")
    return members


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text  # the optimizer's own check names it


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


COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip


def svg_chart(
    series: Sequence[tuple[str, np.ndarray, np.ndarray]], *, xlabel: str, ylabel: str,
    xlog: bool = False, width: int = 620, height: int = 330,
) -> str:  # fmt: skip
    """Lines (label, xs, ys) on shared axes as an inline SVG, the i-th in ``COLORS[i]``; x on a
    log10 scale when ``xlog`` (xs must then be positive)."""
    left, right, top, bottom = 64, 34, 12, 44
    drawn = [
        (i, name, np.log10(xs) if xlog else xs, ys)
        for i, (name, xs, ys) in enumerate(series)
        if len(xs)
    ]
    if not drawn:
        return "<p>(nothing to draw)</p>"
    x_all = np.concatenate([xs for _, _, xs, _ in drawn])
    y_all = np.concatenate([ys for _, _, _, ys in drawn])
    finite = np.isfinite(y_all)
    x0, x1 = float(x_all.min()), float(x_all.max())
    y0, y1 = (float(y_all[finite].min()), float(y_all[finite].max())) if finite.any() else (0, 1)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def px(x: np.ndarray | float) -> np.ndarray:
        return left + (np.asarray(x) - x0) / (x1 - x0) * (width - left - right)

    def py(y: np.ndarray | float) -> np.ndarray:
        return height - bottom - (np.asarray(y) - y0) / (y1 - y0) * (height - top - bottom)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" font-size="11" font-family="sans-serif">',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" '
             f'height="{height - top - bottom}" fill="none" stroke="#999"/>']  # fmt: skip
    for tick in np.linspace(x0, x1, 5):
        text = f"{10**tick:.3g}" if xlog else f"{tick:,.0f}"
        parts.append(f'<text x="{px(tick):.1f}" y="{height - bottom + 14}" '
                     f'text-anchor="middle">{text}</text>')  # fmt: skip
    for tick in np.linspace(y0, y1, 5):
        parts.append(f'<text x="{left - 4}" y="{py(tick) + 4:.1f}" '
                     f'text-anchor="end">{tick:.3g}</text>')  # fmt: skip
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" '
                 f'text-anchor="middle">{html.escape(xlabel)}</text>')  # fmt: skip
    parts.append(f'<text transform="translate(12 {(top + height - bottom) / 2}) rotate(-90)" '
                 f'text-anchor="middle">{html.escape(ylabel)}</text>')  # fmt: skip
    for i, name, xs, ys in drawn:
        keep = np.isfinite(ys)
        points = " ".join(
            f"{x:.1f},{y:.1f}" for x, y in zip(px(xs[keep]), py(ys[keep]), strict=True)
        )
        color = COLORS[i % len(COLORS)]
        parts.append(
            f'<polyline fill="none" stroke-width="1.5" stroke="{color}" points="{points}">'
            f"<title>{html.escape(name)}</title></polyline>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def rate_histograms(members: list[dict[str, Any]], bins: int = 40) -> list[tuple]:
    """Each member's touched coordinates per bin of effective rate (shared log10 bins), as
    step lines for :func:`svg_chart`."""
    positive = [m["rates"][m["rates"] > 0] for m in members]
    pooled = np.concatenate([p for p in positive if p.size] or [np.ones(1)])
    edges = np.logspace(np.log10(pooled.min()), np.log10(pooled.max()) + 1e-9, bins + 1)
    lines = []
    for member, rates in zip(members, positive, strict=True):
        counts = np.histogram(rates, bins=edges)[0].astype(float)
        lines.append((member["label"], np.repeat(edges, 2)[1:-1], np.repeat(counts, 2)))
    return lines


def report_html(members: list[dict[str, Any]], title: str) -> str:
    def cell(value: Any, digits: int = 5) -> str:
        return (
            "—"
            if value is None
            else f"{value:.{digits}f}"
            if isinstance(value, float)
            else str(value)
        )

    def swatch(i: int) -> str:
        return f'<span style="color:{COLORS[i % len(COLORS)]}">&#9632;</span> '

    order = {id(m): i for i, m in enumerate(members)}
    rows = "\n".join(
        f"<tr><td>{rank}</td><td>{swatch(order[id(m)])}{html.escape(m['label'])}</td>"
        f"<td>{m['rows']:,}</td>"
        f"<td>{cell(m['log_loss'])}</td><td>{cell(m['recent_log_loss'])}</td>"
        f"<td>{cell(m['auc'], 4)}</td><td>{cell(m['calibration'], 3)}</td>"
        f"<td>{cell(m['rows_per_second'], 0)}</td>"
        f"<td class=config>{html.escape(str(m['optimizer']))}</td></tr>"
        for rank, m in enumerate(members, 1)
    )
    curves = svg_chart(
        [(m["label"], *(np.array(m["curve"], dtype=float).reshape(-1, 2).T)) for m in members],
        xlabel="rows", ylabel="progressive log-loss per block",
    )  # fmt: skip
    rates = svg_chart(
        rate_histograms(members), xlabel="effective learning rate", ylabel="touched coordinates",
        xlog=True,
    )  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:nth-child(2),td.config{{text-align:left}}td:nth-child(2){{white-space:nowrap}}td.config{{font-size:80%;color:#555}}
figure{{display:inline-block;margin:0 2em 1em 0}}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Leaderboard (lowest progressive log-loss first)</h2>
<table><tr><th>#</th><th>optimizer</th><th>rows</th><th>log-loss</th><th>recent log-loss</th>
<th>recent AUC</th><th>calibration</th><th>rows/s</th><th>configuration</th></tr>
{rows}
</table>
<h2>Loss curves and effective learning rates</h2>
<figure><figcaption>Loss curves</figcaption>{curves}</figure>
<figure><figcaption>Effective learning rates</figcaption>{rates}</figure>
</body></html>
"""


def write_report(
    members: list[dict[str, Any]], output: Path, title: str
) -> tuple[Path, Path | None]:
    """Write ``output`` (HTML, self-contained; ``.html`` added when it has no suffix) and, when
    matplotlib is installed, the figure beside it as PNG (else ``None``)."""
    html_path = output if output.suffix else output.with_suffix(".html")
    html_path.write_text(report_html(members, title))
    try:
        png = figure_png(members, title)
    except RuntimeError:  # no matplotlib
        return html_path, None
    png_path = html_path.with_suffix(".png")
    png_path.write_bytes(png)
    return html_path, png_path


def add_command(commands: Any) -> None:
    """``adaserve compare`` on the CLI's subcommands."""
    parser = commands.add_parser(
        "compare", help="learn a file with several optimizers; write an HTML report and a PNG"
    )
    parser.add_argument("files", nargs="+", help="text files (libsvm, vw, criteo, ndjson; .gz ok)")
    parser.add_argument("--format", required=True, choices=["libsvm", "vw", "criteo", "ndjson"])
    parser.add_argument(
        "--optimizers", nargs="+", default=["adagrad,rmsprop,adam,ftrl"],
        metavar="NAME[:KEY=V[,V...]]",
        help="optimizers, each with a grid of hyperparameters: 'adagrad:lr=0.01,0.1,0.5' ftrl "
        "'adam:lr=1e-3,1e-2:eps=1e-8' (every combination is a member; default: %(default)s)",
    )  # fmt: skip
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--dim", type=int)
    size.add_argument("--hash-bits", type=int)
    parser.add_argument("--lazy", choices=["exact", "frozen"], default="exact")
    parser.add_argument("--hash-seed", type=int, default=0)
    parser.add_argument(
        "--output", type=Path, default=Path("compare.html"),
        help="the HTML report (.html added without a suffix); the PNG goes beside it",
    )  # fmt: skip
    parser.set_defaults(run=run)


def run(args: Any) -> int:
    from optim import AdaserveError

    dim = args.dim if args.dim is not None else 2**args.hash_bits
    try:
        optimizers = parse_optimizers(args.optimizers)
    except ValueError as exc:
        print(f"adaserve compare: --optimizers {exc}", file=sys.stderr)
        return 2
    try:
        members = compare(args.files, args.format, optimizers, dim=dim,
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
    if png_path is None:
        print(f"report: {html_path} (no PNG: pip install 'adaserve[report]' for matplotlib)")
    else:
        print(f"report: {html_path}  figure: {png_path}")
    return 0
