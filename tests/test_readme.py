"""The README's Python examples run, and its walkthrough is the code of optim/walkthrough.py."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_walkthrough_module_is_the_readme_walkthrough() -> None:
    module = (ROOT / "optim" / "walkthrough.py").read_text()
    assert module.endswith(PYTHON_BLOCKS[0])


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_block_runs(index: int, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # blocks may write files (model.npz)
    exec(compile(PYTHON_BLOCKS[index], f"README block {index}", "exec"), {})


def test_walkthrough_shows_iq_keeps_the_larger_rate(capsys) -> None:
    runpy.run_module("optim.walkthrough", run_name="__main__")
    out = capsys.readouterr().out
    assert "IQ:" in out and "CGPA:" in out and "progressive log-loss" in out
