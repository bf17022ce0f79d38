"""Compiled code is never stale: every compiled path sees a change to any source file of optim.

A copy of the ``optim`` package whose general decimal reader returns twice the number is run in a
fresh process, beside the real package, both caching their compiled code in one kernel folder.
Every path that reads numbers (each text format, NDJSON, a JSON CSR body, predict's fused JSON
fast path, and learning from what they read) must see the copy's reader, and the real package,
run again after the copy, must still give the real numbers: the two versions' compiled code
lives side by side, each under its own key. numba's own ``cache=True`` checks only each
function's own file, so without the key the parsers, the JSON readers and the generated
learning modules would load code compiled against the old reader.

Slow (each version compiles its kernels once, in a subprocess), but nothing else shows it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import optim

# The changed helper: the general reader of decimals (numbers of more than 15 digits take it in
# every format), made to return twice the number it read.
PATCHED_FILE = "formats/_scan.py"
PATCH_FROM = "    return compose(neg, mant, exp10, dropped)\n"
PATCH_TO = "    v, status = compose(neg, mant, exp10, dropped)\n    return v * 2.0, status\n"

# A number the general reader reads exactly (17 significant characters; no fixup re-reads it).
LONG = "0.5000000000000000"

PROBE = f"""
import json, sys
import numpy as np
import optim
from optim import Batch, OnlineLogisticRegression
from optim.formats import ParseError, parse_bytes
from optim.formats.json_csr import read_csr, scores_of_json
from optim._cache import CACHE_KEY

def values(data, fmt):
    try:
        return parse_bytes(data, fmt, dim=16).values.tolist()
    except ParseError as error:
        return str(error)

out = {{"package": optim.__file__, "key": CACHE_KEY}}
out["libsvm"] = values(b"1 3:{LONG}\\n", "libsvm")
out["vw"] = values(b"0 | a:{LONG}\\n", "vw")  # (a VW label is read by that reader too)
out["criteo"] = values(b"{LONG}" + b"\\t" * 39 + b"\\n", "criteo")  # the label: 0.5 or 1.0
out["ndjson"] = values(b'{{"indices": [3], "values": [{LONG}], "label": 1}}\\n', "ndjson")
body = b'{{"indptr": [0, 1], "indices": [3], "values": [{LONG}], "labels": [1]}}'
csr = read_csr(body)
out["json_csr"] = csr[2].tolist()
model = OnlineLogisticRegression({{"name": "sgd", "lr": 1.0}}, dim=16, fit_intercept=False)
model.learn(Batch.from_arrays([0, 1], [3], [1.0], [1], dim=16))  # w3 = 0.5, no parsing
features = b'{{"indptr": [0, 1], "indices": [3], "values": [{LONG}]}}'
scores = scores_of_json(model, features, max_rows=10, max_nnz=10)
out["predict"] = scores[0].tolist()
learned = model.learn(Batch.from_arrays(*csr[:3], csr[3], dim=16))
out["learn"] = [learned.margins.tolist(), model.table[3, 0]]
print(json.dumps(out))
"""


def run_probe(package_parent: Path, kernel_dir: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["ADASERVE_KERNEL_DIR"] = str(kernel_dir)
    env["PYTHONPATH"] = str(package_parent)
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=package_parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    root = tmp_path_factory.mktemp("compiled_cache")
    real_parent = Path(optim.__file__).parent.parent
    copy_parent = root / "copy"
    shutil.copytree(
        real_parent / "optim", copy_parent / "optim", ignore=shutil.ignore_patterns("__pycache__")
    )
    patched = copy_parent / "optim" / PATCHED_FILE
    source = patched.read_text()
    assert source.count(PATCH_FROM) == 1, "the patched line moved: update PATCH_FROM"
    patched.write_text(source.replace(PATCH_FROM, PATCH_TO))
    kernel_dir = root / "kernels"
    return {
        "real": run_probe(real_parent, kernel_dir),
        "copy": run_probe(copy_parent, kernel_dir),
        "real_again": run_probe(real_parent, kernel_dir),
        "folders": sorted(p.name for p in kernel_dir.iterdir()),  # type: ignore[dict-item]
    }


PATHS = ("libsvm", "vw", "criteo", "ndjson", "json_csr", "predict", "learn")


def test_each_version_runs_its_own_package(probes: dict[str, dict[str, object]]) -> None:
    assert probes["real"]["package"] == optim.__file__
    assert probes["copy"]["package"].endswith("copy/optim/__init__.py")  # type: ignore[union-attr]
    assert probes["real"]["key"] != probes["copy"]["key"]
    assert probes["folders"] == sorted([probes["real"]["key"], probes["copy"]["key"]])


def test_the_real_package_reads_the_real_numbers(probes: dict[str, dict[str, object]]) -> None:
    real = probes["real"]
    for fmt in ("libsvm", "vw", "ndjson", "json_csr"):
        assert real[fmt] == [0.5], fmt
    assert "label" in real["criteo"]  # type: ignore[operator]  # 0.5 is no label
    assert real["predict"] == [0.25]  # w3 = 0.5 after one SGD step, times 0.5


@pytest.mark.parametrize("path", PATHS)
def test_every_compiled_path_sees_the_changed_reader(
    probes: dict[str, dict[str, object]], path: str
) -> None:
    assert probes["copy"][path] != probes["real"][path], path


def test_the_changed_reader_doubles_what_it_reads(probes: dict[str, dict[str, object]]) -> None:
    copy = probes["copy"]
    for fmt in ("libsvm", "vw", "ndjson", "json_csr"):
        assert copy[fmt] == [1.0], fmt
    assert copy["criteo"] == []  # the label reads 1.0: a row with every column missing
    assert copy["predict"] == [0.5]


def test_the_real_package_is_unchanged_after_the_copy_ran(
    probes: dict[str, dict[str, object]],
) -> None:
    assert probes["real_again"] == probes["real"]


KEY_PROBE = (
    "import numba, optim._cache as c; "
    "print(c.CACHE_KEY, c.COMPILED_DIRECTORY, numba.config.CACHE_DIR, sep='\\n')"
)


def cache_settings(package_parent: Path, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR",)}
    done = subprocess.run(
        [sys.executable, "-c", KEY_PROBE],
        cwd=package_parent,
        env={**clean, "PYTHONPATH": str(package_parent), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split("\n")[:3]


def test_the_key_covers_every_source_file(tmp_path: Path) -> None:
    """Not a hand-kept list: an edit anywhere in the package, or a new module, changes the key."""
    real_parent = Path(optim.__file__).parent.parent
    copy = tmp_path / "copy"
    shutil.copytree(
        real_parent / "optim", copy / "optim", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {"ADASERVE_KERNEL_DIR": str(tmp_path / "kernels")}
    keys = [cache_settings(copy, **env)[0]]
    optimizer = copy / "optim" / "optimizers" / "sgd.py"
    optimizer.write_text(optimizer.read_text() + "\n# an edit\n")
    keys.append(cache_settings(copy, **env)[0])
    (copy / "optim" / "formats" / "extra.py").write_text('"""A new module."""\n')
    keys.append(cache_settings(copy, **env)[0])
    assert len(set(keys)) == 3


def test_the_cache_folders_follow_the_key(tmp_path: Path) -> None:
    real_parent = Path(optim.__file__).parent.parent
    kernels = tmp_path / "kernels"
    key, compiled, numba_dir = cache_settings(real_parent, ADASERVE_KERNEL_DIR=str(kernels))
    assert Path(compiled) == kernels / key and numba_dir == compiled
    # a folder the user gave numba stays the parent of numba's cache
    user = tmp_path / "numba"
    _, compiled, numba_dir = cache_settings(
        real_parent, ADASERVE_KERNEL_DIR=str(kernels), NUMBA_CACHE_DIR=str(user)
    )
    assert Path(compiled) == kernels / key and Path(numba_dir) == user / f"adaserve-{key}"
