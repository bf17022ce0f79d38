"""The README's Python examples run, and its walkthrough is the code of optim/walkthrough.py."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
from datasets import REPO

README = (REPO / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
# Blocks that talk to a server run in test_e2e.py against the real one.
LIBRARY_BLOCKS = [b for b in PYTHON_BLOCKS if "AdaserveClient" not in b]


def test_walkthrough_module_is_the_readme_walkthrough() -> None:
    module = (REPO / "optim" / "walkthrough.py").read_text()
    assert any(module.endswith(block) for block in LIBRARY_BLOCKS)


@pytest.mark.parametrize("index", range(len(LIBRARY_BLOCKS)))
def test_readme_python_block_runs(index: int, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # blocks may write files (model.npz)
    exec(compile(LIBRARY_BLOCKS[index], f"README block {index}", "exec"), {})


def test_walkthrough_shows_iq_keeps_the_larger_rate(capsys) -> None:
    runpy.run_module("optim.walkthrough", run_name="__main__")
    out = capsys.readouterr().out
    assert "IQ:" in out and "CGPA:" in out and "progressive log-loss" in out
