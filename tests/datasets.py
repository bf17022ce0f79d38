"""Readers for the shared real data sets (../shared/data), skipping when they are absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

# The repository, and the shared folder beside it (data sets and tools; absent in a user's clone).
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"
MAKE_CLICKS = SHARED / "tools" / "make_clicks.py"


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
