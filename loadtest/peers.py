"""Peer learners for the online logistic-regression benchmark.

Each ``peer`` function runs another library's learner over a libsvm text file in
one progressive (predict-then-learn) pass and returns a :class:`PeerResult` with
throughput (rows/s, nnz/s), wall and CPU seconds, the peak-RSS growth of the
timed section and the progressive log-loss (natural log, mean over rows).

What is timed, per peer:

* ``vw_native``: Vowpal Wabbit's own C++ parser + driver over a VW-text copy of
  the file (``Workspace("-d file ...")``).  The libsvm -> VW-text conversion is
  done once, before timing, and cached in the temp dir.  VW parses on a second
  thread, so ``cpu_seconds`` can exceed ``seconds``.
* ``vw_python``: one Python call per row on the VW-text lines (file reading,
  VW's string parser and learner are inside the timing).
* ``river_logreg``, ``sklearn_sgd``, ``torch_embeddingbag``: the data is loaded
  with :func:`load_libsvm` before timing (its time is put in ``notes``); the
  timed loop includes building each row's input from the CSR matrix.

Memory: ``peak_rss_mb`` is the growth of the process's peak RSS over the timed
section.  The peak is reset first (``/proc/self/clear_refs`` = 5, Linux), so
data loading before the timer does not mask it; where that is not possible it
falls back to a ``ru_maxrss`` delta, which reads 0 when an earlier step set the
peak.  Run each peer in its own process (:func:`run_isolated`, the CLI does) to
keep the numbers independent.

Run ``python loadtest/peers.py DATA.libsvm`` for the whole suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import io
import itertools
import json
import math
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

DEFAULT_BITS = 20
LOGIT_CLIP = 50.0  # VW clips logistic-loss predictions to [-50, 50]; we use the same everywhere


@dataclass
class PeerResult:
    """One peer's run over a file.

    ``seconds`` is wall time of the timed section, ``cpu_seconds`` user+system
    time of the whole process (all threads) over it, ``peak_rss_mb`` the growth
    of peak RSS over it, ``logloss`` the mean progressive log-loss (nats).
    """

    name: str
    rows: int
    nnz: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    logloss: float
    rows_per_s: float = 0.0
    nnz_per_s: float = 0.0
    notes: str = ""

    def __post_init__(self) -> None:
        if self.seconds > 0:
            if not self.rows_per_s:
                self.rows_per_s = self.rows / self.seconds
            if not self.nnz_per_s:
                self.nnz_per_s = self.nnz / self.seconds

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON."""
        return dataclasses.asdict(self)


# ---------------------------------------- measurement


def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_kb() -> int:
    hwm = _proc_status_kb("VmHWM")
    if hwm is not None:
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Meter:
    """Filled in by :func:`measure` when its block exits."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    peak_rss_abs_mb: float = 0.0
    tracemalloc_peak_mb: float | None = None
    method: str = ""


@contextmanager
def measure(use_tracemalloc: bool = False) -> Iterator[Meter]:
    """Time a block: wall, process CPU, peak-RSS growth (and tracemalloc peak).

    ``use_tracemalloc`` also traces Python allocations (useful for pure-Python
    learners such as River, whose model lives in dicts), at a large slowdown.
    """
    m = Meter()
    gc.collect()
    reset = _reset_peak_rss()
    base_kb = (_proc_status_kb("VmRSS") if reset else None) or _maxrss_kb()
    m.method = "VmHWM-reset" if reset else "ru_maxrss-delta"
    if use_tracemalloc:
        tracemalloc.start()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - t0
        m.cpu_seconds = _cpu_s() - cpu0
        if use_tracemalloc:
            m.tracemalloc_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        peak_kb = _maxrss_kb()
        m.peak_rss_mb = max(0, peak_kb - base_kb) / 1024
        m.peak_rss_abs_mb = peak_kb / 1024


def _result(
    name: str, rows: int, nnz: int, m: Meter, logloss: float, notes: list[str]
) -> PeerResult:
    notes = [*notes, f"rss={m.method} abs_peak={m.peak_rss_abs_mb:.0f}MB"]
    if m.tracemalloc_peak_mb is not None:
        notes.append(f"tracemalloc_peak={m.tracemalloc_peak_mb:.1f}MB")
    return PeerResult(
        name=name,
        rows=rows,
        nnz=nnz,
        seconds=m.seconds,
        cpu_seconds=m.cpu_seconds,
        peak_rss_mb=m.peak_rss_mb,
        logloss=logloss,
        notes="; ".join(notes),
    )


def logistic_loss(margin: float, y_pm1: float) -> float:
    """log(1 + exp(-y * margin)) for y in {-1, +1}, margin clipped to +-50 like VW."""
    z = -y_pm1 * min(max(margin, -LOGIT_CLIP), LOGIT_CLIP)
    return z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))


def _logloss_prob(p: np.ndarray, y01: np.ndarray, eps: float = 1e-15) -> float:
    """Sum of binary log-losses of probabilities ``p`` for 0/1 labels."""
    p = np.clip(p, eps, 1 - eps)
    return float(-(y01 * np.log(p) + (1 - y01) * np.log1p(-p)).sum())


# ---------------------------------------- data


def _head_lines(path: str, max_rows: int) -> bytes:
    with open(path, "rb") as f:
        return b"".join(itertools.islice(f, max_rows))


def load_libsvm(
    path: str,
    max_rows: int | None = None,
    n_features: int = 1 << DEFAULT_BITS,
    zero_based: bool = False,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Load a libsvm/svmlight text file as (CSR float64 matrix, labels as 0/1 float64).

    ``make_clicks.py --format libsvm`` writes 1-based indices (``j + 1``), so the
    default ``zero_based=False`` maps them back to columns ``0 .. 2^bits - 1``.
    Labels ``-1``/``0`` map to 0, anything positive to 1.  ``max_rows`` reads
    only the first rows.  Uses sklearn's Cython parser (~3 s for 200k rows x 34
    nnz here); time it separately, as the peers below do.
    """
    from sklearn.datasets import load_svmlight_file

    src: Any = path if max_rows is None else io.BytesIO(_head_lines(path, max_rows))
    X, y = load_svmlight_file(src, n_features=n_features, zero_based=zero_based, dtype=np.float64)
    X = sp.csr_matrix(X)
    X.sort_indices()
    return X, (y > 0).astype(np.float64)


def libsvm_to_vw(
    path: str, out_path: str, max_rows: int | None = None, zero_based: bool = False
) -> tuple[int, int]:
    """Write a libsvm file as VW text; returns (rows, nnz).

    VW does not read libsvm.  Each row becomes ``±1 | idx:val ...`` in VW's
    default (unnamed) namespace, whose hash is 0, so with the default
    ``--hash strings`` an all-digit feature name ``123`` is weight index
    ``123 & (2^b - 1)`` (no hashing; a named namespace ``|f 123`` adds
    ``hash("f")`` to it instead).  Indices are shifted to 0-based, so VW's
    weight index equals the CSR column of :func:`load_libsvm`.  ``:1`` values
    are dropped (VW's default feature value is 1).  Labels 0/-1 -> -1, else +1.
    """
    shift = 0 if zero_based else 1
    rows = nnz = 0
    with open(path) as src, open(out_path, "w") as dst:
        lines = src if max_rows is None else itertools.islice(src, max_rows)
        buf: list[str] = []
        for line in lines:
            parts = line.split()
            if not parts:
                continue
            label = "1" if float(parts[0]) > 0 else "-1"
            toks = []
            for tok in parts[1:]:
                k, _, v = tok.partition(":")
                idx = str(int(k) - shift)
                toks.append(idx if v == "1" else f"{idx}:{v}")
            buf.append(f"{label} | {' '.join(toks)}\n")
            rows += 1
            nnz += len(toks)
            if len(buf) >= 10_000:
                dst.writelines(buf)
                buf.clear()
        dst.writelines(buf)
    return rows, nnz


def vw_text_for(path: str, max_rows: int | None = None) -> tuple[str, int, int]:
    """Return a cached VW-text copy of a libsvm file: (vw_path, rows, nnz)."""
    st = os.stat(path)
    key = hashlib.sha1(
        f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{max_rows}".encode()
    ).hexdigest()[:12]
    out = os.path.join(tempfile.gettempdir(), f"peers_{os.path.basename(path)}_{key}.vw")
    meta = out + ".json"
    if os.path.exists(out) and os.path.exists(meta):
        with open(meta) as f:
            d = json.load(f)
        return out, d["rows"], d["nnz"]
    tmp = out + f".{os.getpid()}.tmp"
    rows, nnz = libsvm_to_vw(path, tmp, max_rows=max_rows)
    os.replace(tmp, out)
    with open(meta, "w") as f:
        json.dump({"rows": rows, "nnz": nnz}, f)
    return out, rows, nnz


def _loaded(path: str, max_rows: int | None) -> tuple[sp.csr_matrix, np.ndarray, float]:
    t0 = time.perf_counter()
    X, y = load_libsvm(path, max_rows=max_rows)
    return X, y, time.perf_counter() - t0


# ---------------------------------------- Vowpal Wabbit

VW_LOGISTIC = "--loss_function logistic --quiet"
VW_BASE = f"{VW_LOGISTIC} -b {DEFAULT_BITS}"
# Plain AdaGrad: naming any of --sgd/--adaptive/--normalized/--invariant turns the
# other defaults off (gd.cc), so "--adaptive" alone is per-coordinate AdaGrad
# w -= lr * g / sqrt(sum g^2) with the current g included, no t-decay.  -l must be
# given: otherwise VW silently uses eta = 10 for non-default update rules.
VW_ADAGRAD = "--adaptive -l 0.1 --power_t 0.5 --initial_t 0"
VW_FTRL = "--ftrl --ftrl_alpha 0.1 --ftrl_beta 1 --l1 0 --l2 0"
VW_DEFAULT = "-l 0.5"  # VW's own default: --adaptive --normalized --invariant


def vw_native(
    path: str,
    args: str = VW_ADAGRAD,
    max_rows: int | None = None,
    name: str | None = None,
) -> PeerResult:
    """Vowpal Wabbit's native C++ parser + driver over the file, one pass.

    ``args`` are extra VW flags, appended to ``--loss_function logistic -b 20
    --quiet`` (later flags win for -b).  The libsvm file is converted to VW text
    once, untimed (:func:`vw_text_for`).  The loss is VW's own progressive
    ``sum_loss / weighted_examples`` (its "average loss"), logistic loss in nats.
    """
    import vowpalwabbit

    vw_path, rows, nnz = vw_text_for(path, max_rows)
    cmd = f"-d {vw_path} {VW_BASE} {args}"
    with measure() as m:
        ws = vowpalwabbit.Workspace(cmd)  # runs the parser/driver over -d inside __init__
        sum_loss, weighted = ws.get_sum_loss(), ws.get_weighted_examples()
        ws.finish()
    if int(weighted) != rows:
        raise RuntimeError(f"VW saw {weighted} examples, file has {rows}")
    notes = [
        f"vw {vowpalwabbit.__version__}",
        f"args: {VW_BASE} {args}",
        "libsvm->vw conversion untimed",
    ]
    return _result(name or f"vw_native[{args}]", rows, nnz, m, sum_loss / weighted, notes)


def vw_progressive(vw_path: str, args: str, bits: int = DEFAULT_BITS) -> tuple[float, np.ndarray]:
    """Vowpal Wabbit's native driver over a VW-text file, one pass: its own progressive
    log-loss (``sum_loss / weighted_examples``, nats) and each row's pre-update margin (VW's
    ``-p`` output for logistic loss: the raw margin, clipped to +-50)."""
    import vowpalwabbit

    with tempfile.TemporaryDirectory() as tmp:
        predictions = os.path.join(tmp, "p.txt")
        ws = vowpalwabbit.Workspace(f"-d {vw_path} {VW_LOGISTIC} -b {bits} {args} -p {predictions}")
        sum_loss, weighted = ws.get_sum_loss(), ws.get_weighted_examples()
        ws.finish()  # flushes the predictions file
        margins = np.loadtxt(predictions, ndmin=1, usecols=0)
    return sum_loss / weighted, margins


def vw_python(
    path: str,
    args: str = VW_ADAGRAD,
    max_rows: int | None = None,
    mode: str = "predict_learn",
    name: str | None = None,
) -> PeerResult:
    """Vowpal Wabbit driven one row at a time from Python.

    ``mode="predict_learn"``: ``ws.predict(line)`` then ``ws.learn(line)`` (two
    parses per row); the progressive loss is computed from the predicted margin.
    ``ws.predict`` on a labelled line also adds to VW's ``sum_loss`` and
    ``weighted_examples``, so VW's own counters are doubled in this mode.
    ``mode="learn"``: parse once, ``ws.learn(ex)``, read the pre-update margin
    from ``ex.get_simplelabel_prediction()`` (gd predicts before updating).
    """
    import vowpalwabbit

    if mode not in ("predict_learn", "learn"):
        raise ValueError(f"mode must be predict_learn or learn, not {mode!r}")
    vw_path, _, _ = vw_text_for(path, max_rows)
    ws = vowpalwabbit.Workspace(f"{VW_BASE} {args}")
    rows = nnz = 0
    total = 0.0
    with measure() as m, open(vw_path) as f:
        for line in f:
            y = 1.0 if line[0] == "1" else -1.0
            if mode == "predict_learn":
                margin = ws.predict(line)
                ws.learn(line)
            else:
                ex = ws.parse(line)
                ws.learn(ex)
                margin = ex.get_simplelabel_prediction()
                ws.finish_example(ex)
            total += logistic_loss(margin, y)
            rows += 1
            nnz += line.count(" ") - 1
    ws.finish()
    notes = [
        f"vw {vowpalwabbit.__version__}",
        f"mode={mode}",
        f"args: {VW_BASE} {args}",
    ]
    return _result(name or f"vw_python[{mode}]", rows, nnz, m, total / max(rows, 1), notes)


# ---------------------------------------- River


def river_logreg(
    path: str,
    optimizer: str = "adagrad",
    lr: float = 0.1,
    max_rows: int | None = 20_000,
    intercept_lr: float = 0.01,
    l2: float = 0.0,
    opt_kwargs: dict[str, Any] | None = None,
    use_tracemalloc: bool = False,
    name: str | None = None,
) -> PeerResult:
    """River ``LogisticRegression``: predict_proba_one then learn_one per row.

    ``optimizer``: ``adagrad`` (``optim.AdaGrad(lr)``, eps=1e-8), ``sgd``,
    ``adam`` or ``ftrl`` (``optim.FTRLProximal(alpha=lr, beta=1, l1=0, l2=0)``
    unless ``opt_kwargs`` says otherwise).  River updates the intercept with its
    own constant-rate SGD (``intercept_lr``, default 0.01), not the optimizer.
    Rows are dicts ``{column: value}`` built from the CSR inside the timing.
    River is pure Python: use ``max_rows`` (rows/s is over the rows done).
    """
    import river

    X, y, parse_s = _loaded(path, max_rows)
    kw = dict(opt_kwargs or {})
    with measure(use_tracemalloc) as m:
        p = river_progressive(X, y, optimizer, lr, intercept_lr=intercept_lr, l2=l2, **kw)
    p = np.clip(p, 1e-15, 1 - 1e-15)
    total = -float(np.where(y > 0, np.log(p), np.log1p(-p)).sum())
    notes = [
        f"river {river.__version__}",
        f"optimizer={optimizer} lr={lr} {kw or ''} intercept_lr={intercept_lr} l2={l2}",
        f"parse {parse_s:.2f}s untimed",
    ]
    return _result(name or f"river[{optimizer}]", X.shape[0], X.nnz, m, total / X.shape[0], notes)


def river_progressive(
    X: sp.csr_matrix | sp.csr_array,
    y: np.ndarray,
    optimizer: str = "adagrad",
    lr: float = 0.1,
    *,
    intercept_lr: float = 0.01,
    l2: float = 0.0,
    **opt_kwargs: Any,
) -> np.ndarray:
    """River ``LogisticRegression`` over the CSR rows in order: each row's ``P(y=1)`` from
    ``predict_proba_one`` before ``learn_one`` (see :func:`river_logreg` for the optimizers).
    ``optimizer="default"``: River's own default (SGD at 0.01), ``lr`` unused."""
    from river import linear_model, optim

    factories: dict[str, Callable[[], Any]] = {
        "adagrad": lambda: optim.AdaGrad(lr=lr, **opt_kwargs),
        "sgd": lambda: optim.SGD(lr=lr, **opt_kwargs),
        "adam": lambda: optim.Adam(lr=lr, **opt_kwargs),
        "ftrl": lambda: optim.FTRLProximal(
            **{"alpha": lr, "beta": 1.0, "l1": 0.0, "l2": 0.0, **opt_kwargs}
        ),
    }
    if optimizer == "default":
        model = linear_model.LogisticRegression()
    elif optimizer in factories:
        model = linear_model.LogisticRegression(
            optimizer=factories[optimizer](), l2=l2, intercept_lr=intercept_lr
        )
    else:
        raise ValueError(f"optimizer must be 'default' or one of {sorted(factories)}")
    indptr, indices, data = X.indptr, X.indices, X.data
    out = np.empty(X.shape[0])
    for i in range(X.shape[0]):
        a, b = indptr[i], indptr[i + 1]
        x = dict(zip(indices[a:b].tolist(), data[a:b].tolist(), strict=True))
        out[i] = model.predict_proba_one(x)[True]
        model.learn_one(x, bool(y[i]))
    return out


# ---------------------------------------- scikit-learn


def sklearn_sgd(
    path: str,
    batch_size: int = 1000,
    learning_rate: str = "invscaling",
    alpha: float = 1e-6,
    eta0: float = 1.0,
    max_rows: int | None = None,
    name: str | None = None,
) -> PeerResult:
    """scikit-learn ``SGDClassifier(loss="log_loss").partial_fit`` on CSR mini-batches.

    Progressive per mini-batch: each batch is scored with ``predict_proba``
    before ``partial_fit`` sees it (the first batch scores p=0.5).  Inside a
    ``partial_fit`` call sklearn still updates per row (plain SGD, L2 ``alpha``,
    its ``learning_rate`` schedule; sparse input damps intercept steps by 0.01),
    so this is online learning with predictions up to ``batch_size`` rows stale,
    not per-row progressive.  ``shuffle=False`` keeps file order.  Defaults
    (invscaling eta0=1, power_t 0.25, alpha=1e-6) were the best of a small sweep
    on make_clicks data; "optimal" diverges there (log-loss > 1).  Throughput is
    dominated by per-call overhead: ~6k rows/s at batch 100, ~45k at 1000,
    ~250k at 10000.
    """
    import sklearn
    from sklearn.linear_model import SGDClassifier

    X, y, parse_s = _loaded(path, max_rows)
    clf = SGDClassifier(
        loss="log_loss",
        learning_rate=learning_rate,
        alpha=alpha,
        eta0=eta0,
        shuffle=False,
        random_state=0,
    )
    classes = np.array([0.0, 1.0])
    n = X.shape[0]
    total = 0.0
    with measure() as m:
        for a in range(0, n, batch_size):
            Xb, yb = X[a : a + batch_size], y[a : a + batch_size]
            p = clf.predict_proba(Xb)[:, 1] if a else np.full(len(yb), 0.5)
            total += _logloss_prob(p, yb)
            clf.partial_fit(Xb, yb, classes=classes)
    notes = [
        f"sklearn {sklearn.__version__}",
        f"batch={batch_size} learning_rate={learning_rate} alpha={alpha} eta0={eta0}",
        f"parse {parse_s:.2f}s untimed",
    ]
    return _result(name or f"sklearn_sgd[b={batch_size}]", n, X.nnz, m, total / n, notes)


# ---------------------------------------- PyTorch


def torch_embeddingbag(
    path: str,
    optimizer: str = "adagrad",
    lr: float = 0.1,
    max_rows: int | None = 20_000,
    threads: int = 1,
    name: str | None = None,
) -> PeerResult:
    """PyTorch ``EmbeddingBag(mode="sum", sparse=True)`` logistic regression, batch 1.

    One 1-wide embedding row per feature plus one extra row as the bias
    (an always-on feature, like VW's constant), all zero-initialised; each row
    is a bag with ``per_sample_weights`` = feature values.  ``optimizer``:
    ``adagrad`` (``torch.optim.Adagrad``, sparse path, eps=1e-10, accumulator
    starts at 0) or ``sparseadam``.  The loss is ``binary_cross_entropy_with_logits``
    of the forward pass before the step (progressive).  ``threads`` sets
    ``torch.set_num_threads`` (1: intra-op threads only add overhead at batch 1).
    """
    import torch
    import torch.nn.functional as F

    X, y, parse_s = _loaded(path, max_rows)
    torch.set_num_threads(threads)
    torch.sparse.check_sparse_tensor_invariants.disable()  # explicit: no per-step checks
    n, d = X.shape
    # Append the bias column to every row before timing.
    bias = sp.csr_matrix((np.ones(n), np.zeros(n), np.arange(n + 1)), shape=(n, 1))
    Xa = sp.hstack([X, bias], format="csr")
    idx = torch.from_numpy(Xa.indices.astype(np.int64))
    val = torch.from_numpy(Xa.data.astype(np.float32))
    ptr = Xa.indptr.tolist()
    yt = torch.from_numpy(y.astype(np.float32))
    emb = torch.nn.EmbeddingBag(d + 1, 1, mode="sum", sparse=True)
    with torch.no_grad():
        emb.weight.zero_()
    if optimizer == "adagrad":
        opt: torch.optim.Optimizer = torch.optim.Adagrad(emb.parameters(), lr=lr)
    elif optimizer == "sparseadam":
        opt = torch.optim.SparseAdam(list(emb.parameters()), lr=lr)
    else:
        raise ValueError("optimizer must be adagrad or sparseadam")
    offsets = torch.zeros(1, dtype=torch.int64)
    total = 0.0
    with measure() as m:
        for i in range(n):
            a, b = ptr[i], ptr[i + 1]
            logit = emb(idx[a:b], offsets, per_sample_weights=val[a:b]).view(())
            loss = F.binary_cross_entropy_with_logits(logit, yt[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
    notes = [
        f"torch {torch.__version__}",
        f"optimizer={optimizer} lr={lr} threads={threads} batch=1",
        f"parse {parse_s:.2f}s untimed",
    ]
    return _result(name or f"torch_embbag[{optimizer}]", n, X.nnz, m, total / n, notes)


# ---------------------------------------- running


PEERS: dict[str, Callable[..., PeerResult]] = {
    "vw_native": vw_native,
    "vw_python": vw_python,
    "river_logreg": river_logreg,
    "sklearn_sgd": sklearn_sgd,
    "torch_embeddingbag": torch_embeddingbag,
}


def _call(peer: str, kwargs: dict[str, Any]) -> PeerResult:
    return PEERS[peer](**kwargs)


def run_isolated(peer: str, **kwargs: Any) -> PeerResult:
    """Run ``PEERS[peer](**kwargs)`` in a fresh spawned process (clean RSS, imports)."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_call, peer, kwargs).result()


@dataclass
class Job:
    """One suite entry: a peer name and its keyword arguments."""

    peer: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def default_suite(path: str, slow_rows: int) -> list[Job]:
    """Return the benchmark's peer runs (AdaGrad lr 0.1, FTRL alpha 0.1 beta 1)."""
    return [
        Job("vw_native", {"path": path, "args": VW_ADAGRAD, "name": "vw_native adagrad"}),
        Job("vw_native", {"path": path, "args": VW_FTRL, "name": "vw_native ftrl"}),
        Job(
            "vw_native",
            {
                "path": path,
                "args": VW_DEFAULT,
                "name": "vw_native default(a+n+i) l=0.5",
            },
        ),
        Job(
            "vw_python",
            {
                "path": path,
                "args": VW_ADAGRAD,
                "mode": "predict_learn",
                "name": "vw_python adagrad p+l",
            },
        ),
        Job(
            "vw_python",
            {
                "path": path,
                "args": VW_ADAGRAD,
                "mode": "learn",
                "name": "vw_python adagrad learn",
            },
        ),
        Job(
            "sklearn_sgd",
            {"path": path, "batch_size": 1000, "name": "sklearn SGD b=1000"},
        ),
        Job(
            "river_logreg",
            {
                "path": path,
                "optimizer": "adagrad",
                "lr": 0.1,
                "max_rows": slow_rows,
                "name": "river adagrad",
            },
        ),
        Job(
            "river_logreg",
            {
                "path": path,
                "optimizer": "ftrl",
                "lr": 0.1,
                "max_rows": slow_rows,
                "name": "river ftrl",
            },
        ),
        Job(
            "vw_native",
            {
                "path": path,
                "args": VW_ADAGRAD,
                "max_rows": slow_rows,
                "name": "vw_native adagrad",
            },
        ),
        Job(
            "torch_embeddingbag",
            {
                "path": path,
                "optimizer": "adagrad",
                "lr": 0.1,
                "max_rows": slow_rows,
                "name": "torch adagrad",
            },
        ),
        Job(
            "torch_embeddingbag",
            {
                "path": path,
                "optimizer": "sparseadam",
                "lr": 0.001,
                "max_rows": slow_rows,
                "name": "torch sparseadam",
            },
        ),
    ]


def format_table(results: list[PeerResult]) -> str:
    """Markdown table of results."""
    head = "| peer | rows | rows/s | nnz/s | wall s | cpu s | peak RSS +MB | logloss |"
    lines = [head, "|" + "---|" * 8]
    for r in results:
        lines.append(
            f"| {r.name} | {r.rows} | {r.rows_per_s:,.0f} | {r.nnz_per_s:,.0f} "
            f"| {r.seconds:.2f} | "
            f"{r.cpu_seconds:.2f} | {r.peak_rss_mb:.1f} | {r.logloss:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: run the default suite (each peer in its own process) and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="libsvm file (1-based indices, labels 0/1 or -1/+1)")
    ap.add_argument("--slow-rows", type=int, default=20_000, help="row limit for River and torch")
    ap.add_argument("--only", default="", help="comma-separated substrings of job names to run")
    ap.add_argument("--json", default="", help="write results as JSON here")
    ap.add_argument("--repeat", type=int, default=1, help="runs per job; the fastest is kept")
    args = ap.parse_args(argv)
    vw_text_for(args.path)  # convert once, before any timing
    vw_text_for(args.path, args.slow_rows)
    jobs = default_suite(args.path, args.slow_rows)
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        jobs = [j for j in jobs if any(k in j.kwargs.get("name", j.peer) for k in keys)]
    results = []
    for job in jobs:
        runs = [run_isolated(job.peer, **job.kwargs) for _ in range(args.repeat)]
        r = min(runs, key=lambda x: x.seconds)
        if args.repeat > 1:
            walls = ",".join(f"{x.seconds:.2f}" for x in runs)
            r.notes += f"; best of {args.repeat} walls={walls}s"
        print(
            f"{r.name}: {r.rows_per_s:,.0f} rows/s logloss={r.logloss:.4f} ({r.notes})",
            file=sys.stderr,
            flush=True,
        )
        results.append(r)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_dict() for r in results], f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
