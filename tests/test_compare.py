"""adaserve compare: several optimizers over one file, parsed once; HTML report and PNG."""

from __future__ import annotations

import numpy as np
import pytest

from adaserve_cli.compare import compare
from optim import OnlineLogisticRegression
from optim.formats import iter_file_batches
from service.cli import main


def write_libsvm(path, rows: int = 1_500, dim: int = 20, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=dim)
    lines = []
    for _ in range(rows):
        present = np.flatnonzero(rng.random(dim) < 0.3)
        values = rng.normal(size=present.size)
        label = int(rng.random() < 1 / (1 + np.exp(-truth[present] @ values)))
        lines.append(
            f"{label} " + " ".join(f"{j}:{v:.6f}" for j, v in zip(present, values, strict=True))
        )
    path.write_text("\n".join(lines) + "\n")


def test_members_equal_their_own_in_process_models(tmp_path) -> None:
    data = tmp_path / "train.libsvm"
    write_libsvm(data)
    optimizers = [{"name": "adagrad", "lr": 0.2}, {"name": "adam", "lr": 0.01}, {"name": "ftrl"}]
    members = compare([data], "libsvm", optimizers, dim=20)
    for optimizer in optimizers:
        model = OnlineLogisticRegression(optimizer, dim=20)
        for batch in iter_file_batches(data, "libsvm", dim=20):
            model.learn_batch(batch)
        member = next(m for m in members if m["optimizer"]["name"] == optimizer["name"])
        assert member["log_loss"] == pytest.approx(model.metrics.to_dict()["overall"]["log_loss"])
        assert member["rows"] == 1_500 and len(member["curve"]) == 150  # blocks of 10 rows
    losses = [m["log_loss"] for m in members]
    assert losses == sorted(losses)


def test_cli_writes_html_and_png(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    data = tmp_path / "train.libsvm"
    write_libsvm(data)
    output = tmp_path / "report.html"
    code = main(["compare", str(data), "--format", "libsvm", "--dim", "20",
                 "--optimizers", "adagrad,rmsprop,adam,ftrl", "--output", str(output)])  # fmt: skip
    assert code == 0
    page = output.read_text()
    for name in ("adagrad", "rmsprop", "adam", "ftrl"):
        assert f"<td>{name}(" in page
    assert "data:image/png;base64," in page
    assert output.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1. " in capsys.readouterr().out


def test_cli_reports_a_bad_line(tmp_path, capsys) -> None:
    data = tmp_path / "bad.libsvm"
    data.write_text("1 1:1\n1 x:1\n")
    assert main(["compare", str(data), "--format", "libsvm", "--dim", "8",
                 "--output", str(tmp_path / "r.html")]) == 2  # fmt: skip
    assert "line 2" in capsys.readouterr().err
