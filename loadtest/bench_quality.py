"""Out-of-the-box quality: progressive log-loss and AUC of ours against Vowpal Wabbit and River.

    python loadtest/bench_quality.py            # every data set -> loadtest/REPORT_QUALITY.md
    python loadtest/bench_quality.py --quick    # 2,000-row prefixes, a 3-point grid -> a temp dir
    python loadtest/bench_quality.py --cross-rows 0   # without the interactions section

Every data set is one file both sides read, one pass, each row scored before it is learned:

* ``../shared/data``: a9a and agaricus (libsvm, written once as VW text with
  :func:`peers.libsvm_to_vw`), rcv1 (VW text as shipped); training files. A missing one is
  skipped and named in the report.
* ``make_clicks.py --format vw-named --seed 3``: raw integer counts (``I2:1382``), and the same
  file with every count ``x`` replaced by ``log1p(x)``; and the same rows as Criteo TSV through
  our ``text/x-criteo`` parser (which reads counts as ``log1p``), against VW on the log1p file.

Ours (``hash_bits`` = VW's ``-b``): the default model (no optimizer given), ``"auto"``
(:mod:`optim.portfolio`), AdaGrad, FTRL and Adam at their defaults and over a small
learning-rate grid, each plain and with the model options ``normalized`` / ``invariant``. A
configuration the installed ``optim`` refuses (an option it does not have yet) is skipped and
listed. VW: its default (adaptive + normalized + invariant), ``--adaptive``, ``--ftrl`` and
``--coin`` (:mod:`peers`). River: its default ``LogisticRegression`` and AdaGrad 0.1 over our
parsed rows (the same hashed coordinates).

Interactions and holdout (issue 20): the ``make_clicks --crosses 2`` log (``--cross-rows``, a
million rows; C1..C10 in namespace ``x``) with no ``-q``, ``-q xx`` and ``-q CC``, and the public
sets (features in ``|f``) with ``-q ff``; every 10th row held out. Ours (the default, VW's update,
``auto``) against VW's default with the same ``-q``, progressive and holdout log-loss. Our
log-loss is scored everywhere from margins clipped to [-50, 50], as VW scores its own.

Writes ``REPORT_QUALITY.md`` and ``quality_lr.svg`` (log-loss against learning rate per optimizer,
plain against normalized) to ``loadtest/`` (``--out DIR`` elsewhere) and the raw numbers as JSON
to ``loadtest/out/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(HERE), str(REPO)):
    if _p in sys.path:
        sys.path.remove(_p)
    sys.path.insert(0, _p)

import peers  # noqa: E402
from bench_learners import SharedMissingError, installed, locate_shared, machine_info, versions  # noqa: E402
from bench_parse import crossed_clicks  # noqa: E402

from optim import NonFiniteUpdate, OnlineLogisticRegression  # noqa: E402
from optim.batch import Batch  # noqa: E402
from optim.errors import ConfigError  # noqa: E402
from optim.features import FeatureOptions  # noqa: E402
from optim.formats import concat_batches, iter_file_batches  # noqa: E402
from optim.metrics import auc, log_losses  # noqa: E402
from optim.portfolio import PortfolioLogisticRegression  # noqa: E402

REPORT_NAME = "REPORT_QUALITY.md"
PLOT_NAME = "quality_lr.svg"
JSON_NAME = "bench_quality.json"
CLICK_SEED = 3
LEARN_ROWS = 1_000  # rows per batch: a diverging configuration loses one batch, not the file
AGREEMENT_BITS = 24  # few collisions in a row at 2^24 coordinates (see vw_form_agreement)

# ---------------------------------------------------------------- what runs
# Each optimizer's rate parameter and grid (the plot's x axis).
RATE_KEY = {"adagrad": "lr", "ftrl": "alpha", "adam": "lr"}
GRID = {
    "adagrad": (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
    "ftrl": (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
    "adam": (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1),
}
QUICK_GRID = {"adagrad": (0.01, 0.1, 1.0), "ftrl": (0.01, 0.1, 1.0), "adam": (1e-3, 0.01, 0.1)}
# Model options beside the optimizer, by variant name: "plain" always exists; the others only
# where the installed OnlineLogisticRegression accepts them.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "normalized": {"normalized": True},
}
# Fixed configurations beyond the grids (VW's default rule, where it exists).
EXTRA: dict[str, dict[str, Any]] = {
    "adagrad normalized+invariant lr 0.5": {
        "optimizer": {"name": "adagrad", "lr": 0.5},
        "normalized": True,
        "invariant": True,
    },
    "sgd invariant lr 0.5": {"optimizer": {"name": "sgd", "lr": 0.5}, "invariant": True},
}
VW_RUNS = {
    "VW default": peers.VW_DEFAULT,
    "VW --adaptive": peers.VW_ADAGRAD,
    "VW --ftrl": peers.VW_FTRL,
    "VW --coin": "--coin",
}
RIVER_RUNS = {"River default (SGD 0.01)": ("default", 0.0), "River AdaGrad 0.1": ("adagrad", 0.1)}


@dataclass
class DataSet:
    """One row of the comparison: the file VW reads, and the file and format we read."""

    name: str
    vw_path: Path
    our_path: Path
    our_format: str
    note: str = ""


@dataclass
class Outcome:
    """One learner on one data set."""

    log_loss: float | None
    auc: float | None
    seconds: float
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- data
def _head(src: Path, dst: Path, rows: int | None) -> Path:
    if rows is None:
        return src
    with open(src, "rb") as f, open(dst, "wb") as out:
        for k, line in enumerate(f):
            if k >= rows:
                break
            out.write(line)
    return dst


def log1p_counts(src: Path, dst: Path) -> None:
    """The VW-named click file with each ``|I`` count ``x`` as ``log1p(x)`` (``-log1p(-x)``
    below zero), as our Criteo parser reads the same column."""
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            head, bar, rest = line.partition("|I ")
            counts, bar_c, categories = rest.partition(" |C ")
            tokens = []
            for token in counts.split():
                name, _, value = token.partition(":")
                x = float(value)
                tokens.append(f"{name}:{math.copysign(math.log1p(abs(x)), x):.9g}")
            out.write(f"{head}{bar}{' '.join(tokens)}{bar_c}{categories}")


def prepare(shared: Path, work: Path, rows: int, head: int | None, log: Callable) -> tuple[
    list[DataSet], list[str]
]:  # fmt: skip
    """The data sets in ``work``, and a line for each that is missing."""
    sets: list[DataSet] = []
    skipped: list[str] = []
    data = shared / "data"
    for name, relative, zero_based in (
        ("a9a", "a9a/a9a", False),
        ("agaricus", "agaricus/agaricus.txt.train", True),
    ):
        path = data / relative
        if not path.is_file():
            skipped.append(f"{name}: {path} is absent")
            continue
        vw = work / f"{name}.vw"
        peers.libsvm_to_vw(str(path), str(vw), max_rows=head, zero_based=zero_based)
        sets.append(DataSet(name, vw, vw, "vw", "libsvm as VW text (peers.libsvm_to_vw)"))
    rcv1 = data / "rcv1" / "rcv1_small.dat"
    if rcv1.is_file():
        vw = _head(rcv1, work / "rcv1.vw", head)
        sets.append(DataSet("rcv1", vw, vw, "vw", "VW text as shipped (TF-IDF values)"))
    else:
        skipped.append(f"rcv1: {rcv1} is absent")
    make_clicks = shared / "tools" / "make_clicks.py"
    if not make_clicks.is_file():
        skipped.append(f"click streams: {make_clicks} is absent")
        return sets, skipped
    command = [sys.executable, str(make_clicks), "--rows", str(rows), "--seed", str(CLICK_SEED)]
    raw, criteo, logged = work / "clicks_raw.vw", work / "clicks.tsv", work / "clicks_log1p.vw"
    log(f"make_clicks: {rows} rows")
    for fmt, path in (("vw-named", raw), ("criteo", criteo)):
        with open(path, "wb") as out:
            subprocess.run([*command, "--format", fmt], stdout=out, stderr=subprocess.DEVNULL,
                           check=True)  # fmt: skip
    log1p_counts(raw, logged)
    clicks = f"make_clicks --rows {rows} --seed {CLICK_SEED}"
    sets += [
        DataSet("clicks raw (VW text)", raw, raw, "vw", f"{clicks} --format vw-named"),
        DataSet("clicks log1p (VW text)", logged, logged, "vw", "the same, counts as log1p"),
        DataSet(
            "clicks (Criteo TSV)", logged, criteo, "criteo",
            f"{clicks} --format criteo through text/x-criteo (log1p); VW reads the log1p VW text",
        ),
    ]  # fmt: skip
    skipped.append(
        "clicks raw counts through text/x-criteo: our Criteo parser reads integer columns as "
        "log1p only (the raw-count VW text row covers raw counts)"
    )
    return sets, skipped


def read_ours(data: DataSet, bits: int, rows: int = LEARN_ROWS) -> tuple[Batch, list[Batch]]:
    """The file through our parser: the whole, and in pieces of ``rows`` rows."""
    parts = list(
        iter_file_batches(data.our_path, data.our_format, dim=2**bits, max_rows_per_batch=rows)
    )
    return concat_batches(parts, 2**bits), parts


def as_scipy(batch: Batch) -> sp.csr_matrix:
    return sp.csr_matrix(
        (batch.values, batch.indices, batch.indptr), shape=(batch.n_rows, batch.dim)
    )


# ---------------------------------------------------------------- learners
def supported(settings: Mapping[str, Any]) -> str | None:
    """Why the installed optim refuses these model settings (``None``: it accepts them)."""
    try:
        OnlineLogisticRegression(**settings, dim=2)
    except (ConfigError, TypeError) as exc:
        return str(exc)
    return None


def clipped_log_loss(margins: np.ndarray, labels: np.ndarray) -> float:
    """Mean log-loss of the margins clipped to +-50, as VW scores itself: for logistic loss its
    prediction is clipped to [-50, 50] (``min_label``/``max_label``) before its loss, its
    gradient and its ``-p`` output. Only rows with ``|margin| > 50`` (raw counts) change."""
    clipped = np.clip(margins, -peers.LOGIT_CLIP, peers.LOGIT_CLIP)
    return float(np.mean(log_losses(clipped, labels)))


def score_margins(margins: np.ndarray, labels: np.ndarray) -> tuple[float, float | None]:
    return clipped_log_loss(margins, labels), auc(margins, labels)


def run_ours(model: Any, parts: list[Batch], labels: np.ndarray) -> Outcome:
    start = time.perf_counter()
    outcomes = model.learn_batches(parts)
    seconds = time.perf_counter() - start
    refused = [o for o in outcomes if isinstance(o, NonFiniteUpdate)]
    if refused:
        return Outcome(None, None, seconds, f"diverged: {len(refused)} batch(es) refused")
    margins = np.concatenate([o.margins for o in outcomes])
    loss, area = score_margins(margins, labels)
    exact = float(np.mean(log_losses(margins, labels)))  # our own metric: no clipping
    return Outcome(loss, area, seconds, extra={"exact_log_loss": exact})


def our_configurations(grid: Mapping[str, tuple[float, ...]]) -> dict[str, dict[str, Any]]:
    """Every fixed configuration: name -> model settings (plain and variants, grids, extras)."""
    out: dict[str, dict[str, Any]] = {}
    for variant, options in VARIANTS.items():
        suffix = "" if variant == "plain" else f" {variant}"
        for name, rates in grid.items():
            out[f"{name}{suffix} default"] = {"optimizer": {"name": name}, **options}
            for rate in rates:
                optimizer = {"name": name, RATE_KEY[name]: rate}
                out[f"{name}{suffix} {RATE_KEY[name]} {rate:g}"] = {
                    "optimizer": optimizer, **options,
                }  # fmt: skip
    out.update(EXTRA)
    return out


# ---------------------------------------------------------------- one data set
def evaluate(
    data: DataSet, bits: int, grid: Mapping[str, tuple[float, ...]], run_river: bool,
    log: Callable,
) -> dict[str, Any]:  # fmt: skip
    batch, parts = read_ours(data, bits)
    labels = batch.labels
    results: dict[str, Outcome] = {}
    skipped: dict[str, str] = {}
    log(f"{data.name}: {batch.n_rows} rows, {batch.nnz} non-zeros")
    results["ours default"] = run_ours(OnlineLogisticRegression(hash_bits=bits), parts, labels)
    auto = PortfolioLogisticRegression(hash_bits=bits)
    results["ours auto"] = run_ours(auto, parts, labels)
    results["ours auto"].extra |= {"leader": auto.leader, "switches": auto.switches}
    for name, settings in our_configurations(grid).items():
        why = supported(settings)
        if why is not None:
            skipped[name] = why
            continue
        model = OnlineLogisticRegression(**settings, hash_bits=bits)
        results[f"ours {name}"] = run_ours(model, parts, labels)
    for name, args in VW_RUNS.items():
        if not installed("vowpalwabbit"):
            skipped[name] = "vowpalwabbit is not installed"
            continue
        start = time.perf_counter()
        loss, margins = peers.vw_progressive(str(data.vw_path), args, bits=bits)
        seconds = time.perf_counter() - start
        vw_labels = vw_file_labels(data.vw_path)
        results[name] = Outcome(loss, auc(margins, vw_labels), seconds, f"args: {args}")
    for name, (optimizer, lr) in RIVER_RUNS.items():
        if not run_river:
            skipped[name] = "--no-river"
            continue
        if not installed("river"):
            skipped[name] = "river is not installed"
            continue
        start = time.perf_counter()
        p = peers.river_progressive(as_scipy(batch), labels, optimizer, lr)
        seconds = time.perf_counter() - start
        p = np.clip(p, 1e-15, 1 - 1e-15)
        loss = -float(np.mean(np.where(labels > 0, np.log(p), np.log1p(-p))))
        results[name] = Outcome(loss, auc(p, labels), seconds)
    return {
        "name": data.name,
        "rows": batch.n_rows,
        "nnz": batch.nnz,
        "vw_file": data.vw_path.name,
        "our_file": data.our_path.name,
        "our_format": data.our_format,
        "note": data.note,
        "results": {k: vars(v) for k, v in results.items()},
        "skipped": skipped,
    }


def vw_file_labels(path: Path) -> np.ndarray:
    with open(path) as f:
        return np.array([float(line.split(None, 1)[0]) > 0 for line in f if line.strip()], float)


# ---------------------------------------------------------------- VW's update, VW's hashing
VW_CONSTANT = 11650396  # VW's hash of its constant feature (the intercept)


def vw_hashed_rows(path: Path, bits: int) -> tuple[sp.csr_matrix, np.ndarray, int]:
    """A VW-text file's rows at the coordinates VW gives them: feature ``f`` of namespace
    ``ns`` at ``murmurhash3_32(f, murmurhash3_32(ns))`` (a name of digits: its number plus the
    namespace hash), value-0 features dropped, and VW's constant feature in every row (ours
    hashes ``ns^f`` as one name and keeps the intercept apart). Features a row repeats at one
    coordinate are summed, as in all our input (VW steps each occurrence); the third value
    counts the rows that do."""
    from optim.hashing import murmurhash3_32

    mask = (1 << bits) - 1
    namespaces: dict[str, int] = {}
    indptr, indices, values, labels = [0], [], [], []
    repeats = 0
    with open(path) as f:
        for line in f:
            head, *groups = line.rstrip("\n").split("|")
            labels.append(1.0 if float(head.split()[0]) > 0 else 0.0)
            for group in groups:
                tokens = group.split()
                name = "" if group[:1] == " " or not tokens else tokens[0]
                seed = namespaces.setdefault(name, murmurhash3_32(name) if name else 0)
                for token in tokens[1 if name else 0 :]:
                    feature, _, value = token.partition(":")
                    x = float(value) if value else 1.0
                    if x == 0.0:
                        continue
                    digits = feature.isascii() and feature.isdigit()
                    hashed = (
                        (int(feature) + seed) & 0xFFFFFFFF
                        if digits
                        else murmurhash3_32(feature, seed)
                    )
                    indices.append(hashed & mask)
                    values.append(x)
            indices.append(VW_CONSTANT & mask)
            values.append(1.0)
            repeats += len(set(indices[indptr[-1] :])) < len(indices) - indptr[-1]
            indptr.append(len(indices))
    X = sp.csr_matrix((values, indices, indptr), shape=(len(labels), 1 << bits))
    X.sum_duplicates()
    return X, np.array(labels), repeats


def vw_form_agreement(data: DataSet, bits: tuple[int, ...]) -> dict[str, Any]:
    """Our member of VW's form (``VW_FORM``) and VW's default, both on VW's coordinates
    (:func:`vw_hashed_rows`), at each of ``bits``: progressive log-loss and the largest
    difference of margins (VW's clipped to +-50). Where the two agree, what separates our
    VW-form member from VW on VW's own reading of the file is the hashing, not the update."""
    rows: list[dict[str, Any]] = []
    for b in bits:
        X, labels, repeats = vw_hashed_rows(data.vw_path, b)
        model = OnlineLogisticRegression(**EXTRA[VW_FORM], dim=1 << b, fit_intercept=False)
        ours = np.concatenate([
            model.learn(X[s : s + LEARN_ROWS], labels[s : s + LEARN_ROWS]).margins
            for s in range(0, X.shape[0], LEARN_ROWS)
        ])  # fmt: skip
        del model
        vw_loss, vw_margins = peers.vw_progressive(str(data.vw_path), peers.VW_DEFAULT, bits=b)
        rows.append({
            "bits": b, "ours": score_margins(ours, labels)[0], "vw": vw_loss,
            "max_margin_difference": float(np.max(np.abs(np.clip(ours, -50, 50) - vw_margins))),
            "rows_with_repeats": repeats,
        })  # fmt: skip
    return {"data": data.name, "rows": rows}


# ---------------------------------------------------------------- cost of auto
def timed(function: Callable[..., Any], seconds: list[float]) -> Callable[..., Any]:
    """``function``, appending each call's duration to ``seconds``."""

    def call(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args)
        finally:
            seconds.append(time.perf_counter() - start)

    return call


def auto_cost(data: DataSet, bits: int, repeat: int) -> dict[str, Any]:
    """rows/s (median of ``repeat`` fresh passes, interleaved so all see the same machine load)
    and memory of the default model, of ``auto``, and of each of auto's members alone; and how
    much of auto's time is its members' one compiled learning call (``learn_batches`` makes it
    once a pass), the rest being the mixture and each member's accounting of its rows."""
    batch, parts = read_ours(data, bits, 10_000)
    members = PortfolioLogisticRegression(dim=2).member_configs
    makers: dict[str, Callable[[], Any]] = {
        "default": lambda: OnlineLogisticRegression(hash_bits=bits),
        "auto": lambda: PortfolioLogisticRegression(hash_bits=bits),
    }
    for member in members:
        makers[f"member {member.name}"] = lambda m=member: OnlineLogisticRegression(
            **m.settings, hash_bits=bits
        )
    times: dict[str, list[float]] = {name: [] for name in makers}
    in_members: list[float] = []  # of auto's time, in the one compiled call of its members
    memory: dict[str, int] = {}
    for _ in range(repeat):
        for name, make in makers.items():
            model = make()
            if name == "auto":
                model._driver = timed(model._driver, in_members)
            start = time.perf_counter()
            model.learn_batches(parts)
            times[name].append(time.perf_counter() - start)
            memory[name] = model.memory_bytes
    seconds = {name: statistics.median(t) for name, t in times.items()}
    alone = [f"member {m.name}" for m in members]
    return {
        "data": data.name,
        "rows": batch.n_rows,
        "repeat": repeat,
        "members": len(members),
        "seconds": seconds,
        "memory_bytes": memory,
        "members_seconds": sum(seconds[name] for name in alone),
        "auto_members_pass_seconds": statistics.median(in_members),
        "members_memory_bytes": sum(memory[name] for name in alone),
        "largest_member_memory_bytes": max(memory[name] for name in alone),
    }


# ---------------------------------------------------------------- interactions and holdout
CROSS_ROWS = 1_000_000
HOLDOUT_EVERY = 10
VW_FORM = "adagrad normalized+invariant lr 0.5"  # VW's default update (an EXTRA configuration)
CLICK_INTERACTIONS = {"none": (), "-q xx": ("xx",), "-q CC": ("CC",)}
PUBLIC_INTERACTIONS = {"none": (), "-q ff": ("ff",)}


@dataclass
class CrossSet:
    """A VW text file both sides read, and the interactions to try on it."""

    name: str
    path: Path
    interactions: dict[str, tuple[str, ...]]
    note: str


def in_namespace_f(src: Path, dst: Path) -> Path:
    """The file with the unnamed namespace's features in ``|f`` (``-q ff`` crosses them on both
    sides; a space namespace is awkward on VW's command line). Both sides add ``f``'s hash to
    a feature named by digits, so they still train the same coordinates."""
    with open(src, "rb") as f, open(dst, "wb") as out:
        for line in f:
            out.write(line.replace(b" | ", b" |f ", 1))
    return dst


def held_out_copy(src: Path, dst: Path, every: int) -> Path:
    """The file with every ``every``-th row at importance weight 0 (``-1 0 |...``). VW scores
    such a row and neither learns it (its scorer learns rows of weight > 0 only) nor counts it
    in its progressive loss: our ``holdout_every`` in one pass. VW's ``--holdout_period`` is no
    use here: it holds rows out only with ``--passes`` > 1 (``--holdout_after n`` holds out
    every row after the n-th instead)."""
    with open(src, "rb") as f, open(dst, "wb") as out:
        for n, line in enumerate(f, 1):
            if n % every == 0:
                label, _, rest = line.partition(b" ")
                line = b"%s 0 %s" % (label, rest)
            out.write(line)
    return dst


def split_scores(margins: np.ndarray, labels: np.ndarray, held: np.ndarray) -> dict[str, Any]:
    """Log-loss (clipped as VW's) and AUC of the rows learned and of the rows held out."""
    learned = ~held
    scores: dict[str, Any] = {
        "log_loss": clipped_log_loss(margins[learned], labels[learned]),
        "auc": auc(margins[learned], labels[learned]),
        "holdout_log_loss": None,
        "holdout_auc": None,
    }
    if held.any():
        scores["holdout_log_loss"] = clipped_log_loss(margins[held], labels[held])
        scores["holdout_auc"] = auc(margins[held], labels[held])
    return scores


def cross_learners(bits: int, interactions: tuple[str, ...]) -> dict[str, Any]:
    """Ours on one file: the default, VW's update and ``auto``, each holding out every 10th
    row."""
    shared = {"hash_bits": bits, "interactions": list(interactions)}
    return {
        "ours default": OnlineLogisticRegression(**shared, holdout_every=HOLDOUT_EVERY),
        f"ours {VW_FORM}": OnlineLogisticRegression(
            **EXTRA[VW_FORM], **shared, holdout_every=HOLDOUT_EVERY
        ),
        "ours auto": PortfolioLogisticRegression(**shared, holdout_every=HOLDOUT_EVERY),
    }


def learn_crossed(
    path: Path, bits: int, interactions: tuple[str, ...]
) -> tuple[int, int, dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Rows, non-zeros (crosses included), and each of :func:`cross_learners` over the file,
    parsed once, a batch at a time (a million rows with ``-q CC`` are 170 million non-zeros):
    its seconds learning, refused batches and which rows it held out; and its margins."""
    models = cross_learners(bits, interactions)
    margins: dict[str, list[np.ndarray]] = {name: [] for name in models}
    held: dict[str, list[np.ndarray]] = {name: [] for name in models}
    runs = {name: {"seconds": 0.0, "refused": 0} for name in models}
    rows = nnz = 0
    features = FeatureOptions.of(interactions)
    for batch in iter_file_batches(
        path, "vw", dim=2**bits, max_rows_per_batch=LEARN_ROWS, features=features
    ):
        rows, nnz = rows + batch.n_rows, nnz + batch.nnz
        for name, model in models.items():
            start = time.perf_counter()
            outcome = model.learn_batches([batch])[0]
            runs[name]["seconds"] += time.perf_counter() - start
            if isinstance(outcome, NonFiniteUpdate):
                runs[name]["refused"] += 1
                margins[name].append(np.full(batch.n_rows, np.nan))
                held[name].append(np.zeros(batch.n_rows, dtype=bool))
                continue
            margins[name].append(outcome.margins)
            mask = outcome.held_out
            held[name].append(np.zeros(batch.n_rows, bool) if mask is None else mask)
    for name in models:
        runs[name]["held"] = np.concatenate(held[name])
    return rows, nnz, runs, {name: np.concatenate(m) for name, m in margins.items()}


def evaluate_crosses(data: CrossSet, bits: int, log: Callable) -> dict[str, Any]:
    """Progressive and holdout log-loss of ours and of VW's default, each interaction option."""
    labels = vw_file_labels(data.path)
    every_kth = np.arange(1, labels.size + 1) % HOLDOUT_EVERY == 0
    options: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="quality_held_") as tmp:
        held_path = held_out_copy(data.path, Path(tmp) / "held.vw", HOLDOUT_EVERY)
        for option, interactions in data.interactions.items():
            log(f"{data.name}, {option}")
            rows, nnz, runs, margins = learn_crossed(data.path, bits, interactions)
            results: dict[str, dict[str, Any]] = {}
            for name, run in runs.items():
                held = run.pop("held")
                if not np.array_equal(held, every_kth):
                    raise RuntimeError(f"{name} held out other rows than every {HOLDOUT_EVERY}th")
                if run["refused"]:
                    results[name] = {**run, "log_loss": None, "note": "diverged"}
                    continue
                results[name] = {**run, **split_scores(margins[name], labels, held)}
            if installed("vowpalwabbit"):
                args = " ".join([peers.VW_DEFAULT, *(f"-q {q}" for q in interactions)])
                start = time.perf_counter()
                own, vw_margins = peers.vw_progressive(str(held_path), args, bits=bits)
                results["VW default"] = {
                    "seconds": time.perf_counter() - start,
                    "args": args,
                    "own_log_loss": own,  # VW's sum_loss / weighted_examples: the learned rows
                    **split_scores(vw_margins, labels, every_kth),
                }
            options[option] = {"rows": rows, "nnz": nnz, "results": results}
    return {"name": data.name, "note": data.note, "options": options}


def bayes_log_loss(make_clicks_log: Path) -> float | None:
    """The Bayes log-loss make_clicks printed (``bayes_logloss=0.3204``), if it wrote a log."""
    if not make_clicks_log.is_file():
        return None
    found = re.search(r"bayes_logloss=([0-9.]+)", make_clicks_log.read_text())
    return float(found.group(1)) if found else None


def cross_sets(
    shared: Path, work: Path, rows: int, public: list[DataSet], log: Callable
) -> list[CrossSet]:
    """The crossed click log (C1..C10 in namespace ``x``) and the public sets in ``|f``."""
    sets = []
    make_clicks = shared / "tools" / "make_clicks.py"
    if make_clicks.is_file():
        log(f"make_clicks --crosses 2: {rows} rows")
        path = crossed_clicks(make_clicks, rows, work)
        sets.append(CrossSet(
            "clicks with crosses", path, CLICK_INTERACTIONS,
            f"make_clicks --rows {rows} --seed {CLICK_SEED} --format vw-named --crosses 2, "
            "C1..C10 moved to namespace `x`, the rest in `C`, counts in `I`",
        ))  # fmt: skip
    for data in public:
        path = in_namespace_f(data.vw_path, work / f"{data.vw_path.stem}.f.vw")
        sets.append(CrossSet(data.name, path, PUBLIC_INTERACTIONS, "every feature in `|f`"))
    return sets


# ---------------------------------------------------------------- report
def _load(loadavg: Sequence[float] | None) -> str:
    return "unknown" if loadavg is None else " / ".join(f"{x:.1f}" for x in loadavg)


def _f(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def best_of(results: Mapping[str, Any], prefix: str) -> tuple[str | None, float | None]:
    """The best log-loss among ``ours {prefix} <rate> ...`` grid rows."""
    best: tuple[str | None, float | None] = (None, None)
    for name, r in results.items():
        rest = name.removeprefix(f"ours {prefix} ")
        if rest == name or rest.split()[0] not in RATE_KEY.values() or r["log_loss"] is None:
            continue
        if best[1] is None or r["log_loss"] < best[1]:
            best = (rest, r["log_loss"])
    return best


def summary_rows(sets: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Table rows: label, one ``log-loss (AUC)`` cell per data set."""

    def cell(result: Mapping[str, Any] | None) -> str:
        if result is None:
            return "skipped"
        if result["log_loss"] is None:
            return result["note"] or "—"
        return f"{result['log_loss']:.4f} ({_f(result['auc'], 3)})"

    rows: list[tuple[str, list[str]]] = []
    fixed = ["ours default", "ours auto"]
    variants = [v for v in VARIANTS if v == "plain" or any(
        f"ours adagrad {v} default" in s["results"] for s in sets)]  # fmt: skip
    for variant in variants:
        suffix = "" if variant == "plain" else f" {variant}"
        for name in RATE_KEY:
            fixed.append(f"ours {name}{suffix} default")
    for label in fixed:
        rows.append((label, [cell(s["results"].get(label)) for s in sets]))
    for variant in variants:
        suffix = "" if variant == "plain" else f" {variant}"
        for name in RATE_KEY:
            cells = []
            for s in sets:
                rate, loss = best_of(s["results"], f"{name}{suffix}")
                cells.append("—" if loss is None else f"{loss:.4f} ({rate})")
            rows.append((f"ours {name}{suffix}, best of grid", cells))
    for label in [f"ours {n}" for n in EXTRA] + list(VW_RUNS) + list(RIVER_RUNS):
        if any(label in s["results"] for s in sets):
            rows.append((label, [cell(s["results"].get(label)) for s in sets]))
    return rows


def default_decision(sets: list[dict[str, Any]]) -> tuple[list[str], str | None]:
    """Lines on which fixed configuration is <= VW's default on every data set, and the one
    with the lowest mean log-loss among those (``None`` if none qualifies)."""
    with_vw = [s for s in sets if "VW default" in s["results"]]
    if not with_vw:
        return ["VW did not run: no comparison with its default."], None
    candidates = sorted(
        {name for s in with_vw for name in s["results"] if name.startswith("ours ")} - {"ours auto"}
    )
    qualifying: list[tuple[float, str]] = []
    closest: list[tuple[float, str, str]] = []
    for name in candidates:
        ratios = []
        for s in with_vw:
            mine, vw = s["results"].get(name), s["results"]["VW default"]
            ok = mine is not None and mine["log_loss"] is not None
            ratios.append((mine["log_loss"] / vw["log_loss"]) if ok else math.inf)
        worst = max(range(len(ratios)), key=ratios.__getitem__)
        if ratios[worst] <= 1.0:
            losses = [s["results"][name]["log_loss"] for s in with_vw]
            qualifying.append((statistics.mean(losses), name))
        closest.append((ratios[worst], name, with_vw[worst]["name"]))
    lines = []
    auto = [
        (s["results"]["ours auto"]["log_loss"], s["results"]["VW default"]["log_loss"], s["name"])
        for s in with_vw
        if s["results"].get("ours auto", {}).get("log_loss") is not None
    ]
    if auto:
        behind = [f"{name} ({mine:.4f} vs {vw:.4f})" for mine, vw, name in auto if mine > vw]
        margins = ", ".join(f"{name} {mine - vw:+.2g}" for mine, vw, name in auto)
        lines += [
            f"`auto` is at or below VW's default on every data set (auto minus VW: {margins})."
            if not behind
            else f"`auto` is behind VW's default on {len(behind)} of {len(auto)} data sets: "
            + ", ".join(behind) + ".",
            "",
        ]  # fmt: skip
    if qualifying:
        qualifying.sort()
        lines.append(
            "Fixed configurations at or below VW's default log-loss on every data set: "
            + ", ".join(f"`{n}` (mean {m:.4f})" for m, n in qualifying) + "."
        )  # fmt: skip
        return lines, qualifying[0][1]
    closest.sort()
    lines.append(
        "**No fixed configuration available now is at or below VW's default on every data "
        "set.** Closest, by their worst ratio to VW's default log-loss:"
    )
    lines += ["", "| configuration | worst ratio | on |", "|---|---:|---|"]
    lines += [f"| `{n}` | {r:.3f} | {where} |" for r, n, where in closest[:8]]
    return lines, None


def auto_at_or_below_vw(sets: list[dict[str, Any]]) -> bool:
    """Whether ``ours auto`` ran and is at or below ``VW default`` on every set where VW ran."""
    pairs = [
        (s["results"].get("ours auto", {}).get("log_loss"), s["results"]["VW default"]["log_loss"])
        for s in sets
        if "VW default" in s["results"]
    ]
    return bool(pairs) and all(mine is not None and mine <= vw for mine, vw in pairs)


def plot(sets: list[dict[str, Any]], grid: Mapping[str, tuple[float, ...]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    columns = len(RATE_KEY)
    fig, axes = plt.subplots(len(sets), columns, figsize=(4 * columns, 2.6 * len(sets)),
                             squeeze=False)  # fmt: skip
    for row, s in enumerate(sets):
        vw = s["results"].get("VW default")
        for col, name in enumerate(RATE_KEY):
            ax = axes[row][col]
            for variant, style in zip(VARIANTS, ("-o", "--s"), strict=False):
                suffix = "" if variant == "plain" else f" {variant}"
                points = [
                    (rate, s["results"][key]["log_loss"])
                    for rate in grid[name]
                    if (key := f"ours {name}{suffix} {RATE_KEY[name]} {rate:g}") in s["results"]
                    and s["results"][key]["log_loss"] is not None
                ]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, style, label=variant, markersize=3)
            if vw is not None:
                ax.axhline(vw["log_loss"], color="grey", lw=0.8, ls=":", label="VW default")
            ax.set_xscale("log")
            ax.set_title(f"{s['name']}: {name}", fontsize=8)
            ax.set_xlabel(RATE_KEY[name], fontsize=7)
            ax.tick_params(labelsize=6)
            if vw is not None:  # diverged points would hide the interesting range
                ax.set_ylim(top=max(3 * vw["log_loss"], 0.1), bottom=0)
            if row == 0 and col == 0:
                ax.legend(fontsize=6)
    axes[0][0].set_ylabel("progressive log-loss", fontsize=7)
    fig.tight_layout()
    with matplotlib.rc_context({"svg.hashsalt": "bench_quality"}):  # the same figure, same bytes
        fig.savefig(path, metadata={"Date": None})
    plt.close(fig)
    return True


def clipping_note(sets: list[dict[str, Any]]) -> list[str]:
    """How our log-loss is scored beside VW's, and what that changes on these sets."""
    moved = []
    for s in sets:
        gaps = [
            (r["extra"]["exact_log_loss"] - r["log_loss"], name)
            for name, r in s["results"].items()
            if r["log_loss"] is not None and "exact_log_loss" in r.get("extra", {})
        ]
        gap, name = max(gaps, default=(0.0, ""))
        if gap > 1e-4:
            moved.append(f"{s['name']} by up to {gap:.4f} (`{name}`)")
    return [
        "Our log-loss is scored as VW scores its own: from margins clipped to [-50, 50] (for "
        "logistic loss VW clips its prediction there before its loss, its gradient and its "
        "`-p` output). Our models' own metrics do not clip: a row predicted at margin -66 "
        "that is a click costs 66 nats there, 50 here. Scoring without the clip would raise "
        "ours on " + ("; ".join(moved) if moved else "no data set by more than 1e-4") + ".",
        "",
    ]


def _scores(result: Mapping[str, Any] | None, key: str) -> str:
    if result is None:
        return "skipped"
    loss, area = result.get(key), result.get(key.replace("log_loss", "auc"))
    if loss is None:
        return result.get("note") or "—"
    return f"{loss:.4f} ({_f(area, 3)})"


def render_crosses(crosses: list[dict[str, Any]]) -> list[str]:
    """The section of issue 20: progressive and holdout log-loss with and without crosses."""
    lines = [
        "## Interactions and holdout (issue 20)",
        "",
        f"One pass over each file; every {HOLDOUT_EVERY}th row (the {HOLDOUT_EVERY}th, "
        f"{2 * HOLDOUT_EVERY}th, ...) is held out: scored by the model as it stands, not learned. "
        f"Ours: `holdout_every={HOLDOUT_EVERY}`. VW: the same file with those rows at importance "
        "weight 0 (`-1 0 |...`), which VW scores and does not learn; its `--holdout_period` acts "
        "only with `--passes` > 1, so VW's holdout loss is computed here from its `-p` "
        "predictions on those rows, and its progressive loss is its own (the rows of weight "
        "0 count for nothing in it). *progressive*: log-loss (AUC) of the learned rows, each "
        "scored before it is learned; *holdout*: of the held-out rows. `VW default` is `-l 0.5` "
        "(adaptive, normalized, invariant) with the same `-q`; `ours "
        f"{VW_FORM}` is its update; `ours auto` holds the same rows out (scored by its mixture, "
        "learned by no member). VW hashes a named feature with its "
        "namespace's hash as the seed where we hash `ns^name` (README, hashing rules): on the "
        "click log the two sides' collisions differ, most with `-q CC`; the public sets' "
        "features are named by digits, which both sides place alike.",
        "",
    ]
    for c in crosses:
        options = c["options"]
        names = list(dict.fromkeys(n for o in options.values() for n in o["results"]))
        first = next(iter(options.values()))
        bayes = f"; Bayes log-loss {c['bayes']:.4f}" if c.get("bayes") is not None else ""
        lines += [f"### {c['name']} ({first['rows']:,} rows{bayes})", "", c["note"] + ".", ""]
        lines.append(
            "| learner | "
            + " | ".join(f"{o}: progressive | {o}: holdout" for o in options) + " |"
        )  # fmt: skip
        lines.append("|---|" + "---:|---:|" * len(options))
        lines.append(
            "| non-zeros a row | "
            + " | ".join(f"{o['nnz'] / o['rows']:.1f} | " for o in options.values()) + " |"
        )  # fmt: skip
        for name in names:
            cells = []
            for o in options.values():
                result = o["results"].get(name)
                cells += [_scores(result, "log_loss"), _scores(result, "holdout_log_loss")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if not any("VW default" in o["results"] for o in options.values()):
            lines += ["", "VW did not run (vowpalwabbit is not installed)."]
        lines += ["", *cross_summary(options), ""]
    return lines


def cross_summary(options: Mapping[str, Any]) -> list[str]:
    """What each ``-q`` does to the holdout log-loss against none, and how
    far ours with VW's update is from VW's default."""
    base = options["none"]["results"]
    changes = []
    for option, o in options.items():
        if option == "none":
            continue
        moves = []
        for name, r in o["results"].items():
            key = "holdout_log_loss"
            if r.get(key) is not None and base.get(name, {}).get(key) is not None:
                moves.append(f"{r[key] - base[name][key]:+.4f} ({name})")
        changes.append(f"`{option}` " + ", ".join(moves))
    lines = ["Against no `-q`, holdout log-loss: " + "; ".join(changes) + "."]
    gaps = [
        abs(o["results"][f"ours {VW_FORM}"][key] - o["results"]["VW default"][key])
        for o in options.values()
        for key in ("log_loss", "holdout_log_loss")
        if "VW default" in o["results"] and o["results"][f"ours {VW_FORM}"].get(key) is not None
    ]
    if gaps:
        lines.append(f"Ours with VW's update is within {max(gaps):.1e} of VW's default here.")
    return [" ".join(lines)]


def render(info: dict[str, Any]) -> str:
    sets = info["sets"]
    lines = [
        "# Out-of-the-box quality: ours against Vowpal Wabbit and River",
        "",
        f"Generated by `{info['command']}` on {info['date']} ({info['machine']['nproc']} cores, "
        f"load {_load(info['machine']['loadavg_start'])}; {info['versions']}).",
        "",
    ]
    if info["quick"]:
        lines += ["**quick mode**: 2,000-row prefixes and a 3-point grid; a smoke test, not "
                  "the numbers to quote.", ""]  # fmt: skip
    lines += [
        "One pass over each file, every row scored before it is learned (progressive "
        "validation); log-loss in nats, mean over rows; AUC over all rows in brackets. "
        f"Both sides hash into 2^{info['bits']} coordinates (VW `-b {info['bits']}`). "
        '"Best of grid" picks the learning rate in hindsight, per data set: it is what tuning '
        "could reach, not what a user gets by default.",
        "",
        *clipping_note(sets),
        "## Data sets",
        "",
        "| data set | rows | non-zeros | VW reads | we read | what |",
        "|---|---:|---:|---|---|---|",
    ]
    for s in sets:
        lines.append(
            f"| {s['name']} | {s['rows']:,} | {s['nnz']:,} | `{s['vw_file']}` | "
            f"`{s['our_file']}` ({s['our_format']}) | {s['note']} |"
        )
    lines += [""] + [f"- skipped: {line}" for line in info["skipped_sets"]]
    lines += ["", "## Progressive log-loss (AUC)", ""]
    lines.append("| learner | " + " | ".join(s["name"] for s in sets) + " |")
    lines.append("|---|" + "---:|" * len(sets))
    for label, cells in summary_rows(sets):
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "`ours default` is a model created with no optimizer (AdaGrad lr 0.01 today). "
        "`ours auto` predicts with the mixture of its members (`optim.portfolio`); its leader "
        "(the member of highest weight) at the end, and how often the lead changed hands: "
        + "; ".join(
            f"{s['name']} → {s['results']['ours auto']['extra'].get('leader')} "
            f"({s['results']['ours auto']['extra'].get('switches')} switches)"
            for s in sets if "ours auto" in s["results"]
        ) + ".",
        "",
    ]  # fmt: skip
    skipped = sorted({(k, v) for s in sets for k, v in s["skipped"].items()})
    if skipped:
        reasons: dict[str, list[str]] = {}
        for name, why in skipped:
            reasons.setdefault(why, []).append(name)
        lines += ["Configurations skipped (the installed `optim` or peers refuse them):", ""]
        for why, names in reasons.items():
            shown = ", ".join(f"`{n}`" for n in names[:6]) + (" …" if len(names) > 6 else "")
            lines.append(f"- {len(names)} configuration(s), e.g. {shown}: {why}")
        lines.append("")
    if info["plot"]:
        lines += [
            "## Log-loss against learning rate",
            "",
            f"![log-loss against learning rate]({PLOT_NAME})",
            "",
            "One panel per data set and optimizer: plain (solid) against normalized (dashed, "
            "once `normalized` exists), VW's default dotted.",
            "",
        ]
    decision, chosen = default_decision(sets)
    lines += ["## The default (issue 16, section 3)", "", *decision, ""]
    normalized_ran = any("normalized" in name for s in sets for name in s["results"])
    lines += [] if chosen or normalized_ran else [
        "Without the normalized update no fixed rate suits both raw counts (which want a small "
        "rate: large values make large steps) and sparse binary or TF-IDF rows (which want a "
        "large one): the best rate of the grid moves by two decades between data sets, and on "
        "raw counts even the best of every grid stays behind VW's default. `auto` recovers the "
        "tuned rate on every set but cannot beat a rule it does not hold.",
        "",
    ]  # fmt: skip
    auto_everywhere = auto_at_or_below_vw(sets)
    if chosen:
        lines.append(f"Decision: the data supports `{chosen}` as the default.")
    elif auto_everywhere:
        gap, where = min(
            (s["results"]["VW default"]["log_loss"] - s["results"]["ours auto"]["log_loss"],
             s["name"])
            for s in sets
            if "VW default" in s["results"]
        )  # fmt: skip
        lines.append(
            "Decision: `auto` meets section 3's bar on every data set here and takes "
            "`feedback` and `holdout_every` like a single model, so it is the default: a model "
            "created with no optimizer through the REST API, the Python client or `adaserve "
            "train` is `auto`. In process, `OnlineLogisticRegression()` is one model and stays "
            "AdaGrad lr 0.01 (the library's one-model class cannot be a portfolio: "
            "`new_model('auto', ...)` or `PortfolioLogisticRegression` is the default's class). "
            "Its price: K models' memory and time, and K models' work per prediction (below). "
            f"Its narrowest margin, {gap:.2g} nats a row on {where}, is a tie rather than a "
            "win (the mixture's rate and priors were chosen on these same six sets: there is "
            "no held-out set)."
        )
    else:
        lines.append(
            "Decision: the default stays AdaGrad lr 0.01 until one configuration (or `auto`) "
            "is at or below VW's default everywhere."
        )
    if info.get("crosses"):
        lines += ["", *render_crosses(info["crosses"])]
    agreement = info.get("vw_form_agreement")
    if agreement:
        lines += [
            "",
            "## Our VW-form member against VW, on VW's coordinates",
            "",
            f"`ours adagrad normalized+invariant lr 0.5` has VW's default update. On "
            f"{agreement['data']} it still differs from `VW default` because the two read "
            "the file into different coordinates: VW hashes `|I I1:3` as "
            '`murmurhash3("I1", murmurhash3("I"))` and keeps a feature a row repeats at '
            "one coordinate as separate occurrences (each adds to AdaGrad's sum and to the "
            "normalizer on its own), while we hash `I^I1` as one name and sum repeats (so "
            "two colliding binary features make one value 2, which sets that coordinate's "
            "scale to 2 for good). Below, both learn from VW's coordinates (this bench "
            "hashes the file as VW does; repeats still summed on our side):",
            "",
            "| hash bits | rows with a repeated coordinate | ours (VW form) | VW default | "
            "largest margin difference |",
            "|---:|---:|---:|---:|---:|",
            *(
                f"| {r['bits']} | {r['rows_with_repeats']:,} | {r['ours']:.6f} | "
                f"{r['vw']:.6f} | {r['max_margin_difference']:.2g} |"
                for r in agreement["rows"]
            ),
            "",
            "With few repeats (2^24 coordinates) the update is VW's to rounding (VW is "
            "float32); at 2^20 the summed repeats alone move it. We keep summing: a hashed "
            "row is a vector, and the dense references define the update on that vector.",
        ]
    cost = info.get("auto_cost")
    if cost:
        rows, seconds, memory = cost["rows"], cost["seconds"], cost["memory_bytes"]
        slowest = max(t for name, t in seconds.items() if name.startswith("member "))
        k = cost["members"]
        lines += [
            "",
            f"## Cost of `auto` ({k} members, {cost['data']}, {rows:,} rows, median of "
            f"{cost['repeat']} interleaved passes)",
            "",
            "| model | rows/s | memory (MB) |",
            "|---|---:|---:|",
            *(
                f"| {name} | {rows / seconds[name]:,.0f} | {memory[name] / 2**20:.1f} |"
                for name in seconds
            ),
            f"| the {k} members one after the other | {rows / cost['members_seconds']:,.0f} | "
            f"{cost['members_memory_bytes'] / 2**20:.1f} |",
            "",
            f"- time: auto takes {seconds['auto'] / seconds['default']:.2f}x the default's "
            f"(K = {k}), {seconds['auto'] / cost['members_seconds']:.2f}x its members' own "
            "passes added up (each alone in its own update form: the normalized and invariant "
            "forms cost more than plain AdaGrad, the default) and "
            f"{seconds['auto'] / (k * slowest):.2f}x "
            "K times its slowest member.",
            *(
                [
                    f"- of auto's time, {cost['auto_members_pass_seconds'] / seconds['auto']:.0%} "
                    f"is its members learning (one compiled call of the {k} update kernels, "
                    f"{cost['auto_members_pass_seconds'] / cost['members_seconds']:.0%} of the "
                    "members' passes alone added up); the rest is the mixture's update "
                    "(`mix_rows`, compiled) and each member's accounting of its rows "
                    "(progressive metrics, feature names), which a member alone does too."
                ]
                if "auto_members_pass_seconds" in cost
                else []
            ),
            f"- memory: {memory['auto'] / memory['default']:.2f}x the default's, "
            f"{memory['auto'] / cost['members_memory_bytes']:.3f}x the members' added up, "
            f"{memory['auto'] / (k * cost['largest_member_memory_bytes']):.2f}x K times the "
            "largest member (FTRL and Adam keep two slots a coordinate, AdaGrad one).",
            "",
            "Memory is the models' own accounting (`memory_bytes`: state, tables, metrics).",
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="2,000-row prefixes, 3-point grid, temp dir"
    )
    ap.add_argument("--rows", type=int, default=100_000, help="click rows to generate (100000)")
    ap.add_argument(
        "--cross-rows", type=int, default=CROSS_ROWS,
        help=f"rows of the crossed click log ({CROSS_ROWS}; 2000 with --quick; 0: no crosses)",
    )  # fmt: skip
    ap.add_argument("--bits", type=int, default=20)
    ap.add_argument("--shared", default=None, help="the shared dir (default ../shared)")
    ap.add_argument("--out", default=None, help="write the report and plot into this dir")
    ap.add_argument("--no-river", action="store_true", help="leave River out")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes for the cost of auto")
    ap.add_argument("--render", metavar="JSON", help="only write the report of a run's JSON")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.render:  # the report and plot again from a run's JSON, nothing re-run
        info = json.loads(Path(args.render).read_text())
        out_dir = Path(args.out) if args.out else HERE
        grid = QUICK_GRID if info["quick"] else GRID
        info["plot"] = plot(info["sets"], grid, out_dir / PLOT_NAME)
        (out_dir / REPORT_NAME).write_text(render(info))
        return 0
    try:
        shared = locate_shared(args.shared)
    except SharedMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    head = 2_000 if args.quick else None
    rows = 2_000 if args.quick else args.rows
    grid = QUICK_GRID if args.quick else GRID
    repeat = 1 if args.quick else args.repeat
    cross_rows = min(args.cross_rows, 2_000) if args.quick else args.cross_rows
    if args.out:
        out_dir = Path(args.out)
    elif args.quick:
        out_dir = Path(tempfile.mkdtemp(prefix="bench_quality_"))
    else:
        out_dir = HERE
    json_path = (out_dir if args.out or args.quick else HERE / "out") / JSON_NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[quality] {msg}", file=sys.stderr, flush=True)

    info: dict[str, Any] = {
        "command": "python loadtest/bench_quality.py " + shlex.join(argv),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions().items()),
        "quick": args.quick,
        "bits": args.bits,
    }
    with tempfile.TemporaryDirectory(prefix="quality_data_") as tmp:
        data_sets, info["skipped_sets"] = prepare(shared, Path(tmp), rows, head, log)
        info["sets"] = [evaluate(d, args.bits, grid, not args.no_river, log) for d in data_sets]
        if cross_rows:
            public = [d for d in data_sets if d.name in ("a9a", "agaricus", "rcv1")]
            info["crosses"] = []
            for c in cross_sets(shared, Path(tmp), cross_rows, public, log):
                info["crosses"].append(evaluate_crosses(c, args.bits, log))
                info["crosses"][-1]["bayes"] = bayes_log_loss(c.path.with_suffix(".log"))
        json_path.write_text(json.dumps(info, indent=1, default=str))  # kept if a step fails
        raw = [d for d in data_sets if d.name == "clicks raw (VW text)"]
        if raw and installed("vowpalwabbit"):
            log("VW's update on VW's coordinates")
            agreement_bits = (args.bits,) if args.quick else (args.bits, AGREEMENT_BITS)
            info["vw_form_agreement"] = vw_form_agreement(raw[0], agreement_bits)
        clicks = [d for d in data_sets if d.name == "clicks log1p (VW text)"]
        if clicks:
            log("cost of auto")
            info["auto_cost"] = auto_cost(clicks[0], args.bits, repeat)
    info["plot"] = plot(info["sets"], grid, out_dir / PLOT_NAME)
    (out_dir / REPORT_NAME).write_text(render(info))
    json_path.write_text(json.dumps(info, indent=1, default=str))
    log(f"wrote {out_dir / REPORT_NAME}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
