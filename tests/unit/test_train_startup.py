"""``adaserve train``'s whole process: it imports only what the job needs (no scipy, FastAPI or
another format's reader on the text path), reports where start-up went, learns in a reader
thread the same model, bit for bit, as a serial loop, and its messages say what happened."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from adaserve_cli.train import ProgressTable, read_ahead
from optim import OnlineLogisticRegression
from optim.formats import iter_file_batches
from optim.portfolio import load_model
from service.cli import main

DIM = 4096


def libsvm_file(path: Path, rows: int, seed: int = 5, largest: int = DIM - 1) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "w") as out:
        for _ in range(rows):
            idx = np.sort(rng.choice(largest + 1, size=int(rng.integers(1, 12)), replace=False))
            values = " ".join(f"{i}:{rng.normal():.5g}" for i in idx)
            out.write(f"{int(rng.integers(0, 2))} {values}\n")
    return path


def test_the_text_path_imports_no_scipy_fastapi_or_other_format(tmp_path: Path) -> None:
    source = libsvm_file(tmp_path / "rows.libsvm", 500)
    program = (
        "import json, sys\n"
        "from service.cli import main\n"
        f"code = main(['train', {str(source)!r}, '--format', 'libsvm', '--dim', '{DIM}', "
        f"'-q', '-o', {str(tmp_path / 'm.npz')!r}])\n"
        "roots = {m.split('.')[0] for m in sys.modules}\n"
        "print(json.dumps({'code': code, 'scipy': sorted(m for m in sys.modules "
        "if m.startswith(('scipy.sparse', 'scipy.special', 'scipy.linalg'))), "
        "'web': sorted(roots & {'fastapi', 'starlette', 'pydantic', 'uvicorn'}), "
        "'formats': sorted(m for m in sys.modules if m.startswith('optim.formats.') and "
        "m.split('.')[2] in ('vw', 'criteo', 'ndjson'))}))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          check=True)  # fmt: skip
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert loaded == {"code": 0, "scipy": [], "web": [], "formats": []}, loaded
    assert load_model(tmp_path / "m.npz").step == 500  # the default: auto
    # the breakdown: every part measured, and they add up to the total
    line = next(x for x in done.stderr.splitlines() if x.startswith("start-up"))
    numbers = [float(x) for x in re.findall(r"\d+\.\d+", line)]
    assert "from process start" in line and len(numbers) == 6, line
    assert numbers[0] == pytest.approx(sum(numbers[1:]), abs=0.01)


def test_the_reader_thread_learns_the_serial_model_bit_for_bit(tmp_path: Path) -> None:
    source = libsvm_file(tmp_path / "rows.libsvm", 6_000)
    out = tmp_path / "threaded.npz"
    argv = ["train", str(source), "--format", "libsvm", "--dim", str(DIM),
            "--optimizer", "adagrad", "--lr", "0.2"]  # fmt: skip
    assert main([*argv, "-q", "-o", str(out)]) == 0
    serial = OnlineLogisticRegression({"name": "adagrad", "lr": 0.2}, DIM)
    for batch in iter_file_batches(source, "libsvm", dim=DIM):
        serial.learn_batch(batch)
    threaded = OnlineLogisticRegression.load(out)
    assert threaded.step == serial.step == 6_000
    for (name, a), b in zip(threaded.state_arrays().items(), serial.state_arrays().values(),
                            strict=True):  # fmt: skip
        assert np.array_equal(a, b), name
    assert threaded.metrics.to_dict() == serial.metrics.to_dict()


def test_read_ahead_keeps_the_order_and_the_error_and_runs_in_its_own_thread() -> None:
    rng = random.Random(3)
    producers: set[str] = set()

    def items():
        for i in range(200):
            producers.add(threading.current_thread().name)
            if rng.random() < 0.1:
                time.sleep(0.001)
            yield i
        raise ValueError("line 201")

    got = []
    with pytest.raises(ValueError, match="line 201"):
        for item in read_ahead(items(), depth=2):
            got.append(item)
    assert got == list(range(200))
    assert producers == {"adaserve-reader"}


def test_progress_rates_are_each_lines_own(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    clock = iter([10.0, 20.0])
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    table = ProgressTable(None, lines.append, start=0.0)
    table.add(np.full(1_000, 0.5), None, began=0.0)  # rows 1..1000 learned from 0 s to 10 s
    table.add(np.full(1_000, 0.5), None, began=10.0)  # rows 1001..2000 from 10 s to 20 s
    rates = [float(line.split()[-1]) for line in lines[1:]]
    assert rates == [100.0] * len(rates)  # a row a 10 ms all along: each line says so
    assert len(rates) == 11  # rows 1, 2, 4, ..., 1024


def test_messages_say_the_model_is_not_saved_and_which_dim_libsvm_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = libsvm_file(tmp_path / "rows.libsvm", 300)
    assert main(["train", str(source), "--format", "libsvm", "--dim", str(DIM), "-q"]) == 0
    assert "model       not saved (no --output FILE given)" in capsys.readouterr().err
    wide = libsvm_file(tmp_path / "wide.libsvm", 300, largest=70_000)
    assert main(["train", str(wide), "--format", "libsvm", "--hash-bits", "12", "-q"]) == 2
    err = capsys.readouterr().err
    met = int(re.search(r"the largest index met so far is (\d+)", err).group(1))
    assert met >= DIM and f"needs --dim {met + 1} or more" in err, err
    assert main(["train", str(wide), "--format", "libsvm", "--dim", str(met + 1), "-q"]) in (0, 2)
