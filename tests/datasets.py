"""Readers for the shared real data sets (../shared/data), skipping when they are absent."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import scipy.sparse as sp

# The repository, and the shared folder beside it (data sets and tools; absent in a user's clone).
# ADASERVE_SHARED points elsewhere (a git worktree is not beside it).
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ADASERVE_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
MAKE_CLICKS = SHARED / "tools" / "make_clicks.py"


def loadtest_script(name: str, *, needs_make_clicks: bool = True) -> ModuleType:
    """``loadtest/<name>.py`` imported as module ``name`` (registered in ``sys.modules``, where its
    dataclasses look themselves up); the test is skipped when it needs the click generator of
    ../shared and that is absent."""
    if needs_make_clicks and not MAKE_CLICKS.is_file():
        pytest.skip(f"{MAKE_CLICKS} is absent (../shared lives beside the repo, not in it)")
    spec = importlib.util.spec_from_file_location(name, REPO / "loadtest" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def shared_file(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data set {path} is absent (it lives beside the repo, not in it)")
    return path


def read_text_rows(path: Path, vw: bool = False) -> tuple[sp.csr_array, np.ndarray]:
    """libsvm (``label idx:val ...``) or single-namespace VW (``label |f idx:val ...``) text."""
    indptr, indices, values, labels = [0], [], [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        head, _, rest = line.partition("|") if vw else line.partition(" ")
        labels.append(float(head.split()[0]))
        tokens = rest.split()[1:] if vw else rest.split()
        for token in tokens:
            index, _, value = token.partition(":")
            indices.append(int(index))
            values.append(float(value) if value else 1.0)
        indptr.append(len(indices))
    dim = max(indices) + 1
    X = sp.csr_array(
        (np.array(values), np.array(indices), np.array(indptr)), shape=(len(labels), dim)
    )
    return X, (np.array(labels) > 0).astype(float)
