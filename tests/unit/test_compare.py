"""adaserve compare: optimizers and grids of hyperparameters over one file, parsed once; a
self-contained HTML report (inline SVG) and a PNG when matplotlib is there."""

from __future__ import annotations

import builtins
import re

import numpy as np
import pytest

from adaserve_cli import compare as compare_module
from adaserve_cli.compare import compare, parse_optimizers
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
        assert re.search(rf"</span> {name}</td>", page), name
    assert page.count("<svg") == 2 and "<img" not in page
    assert output.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1. " in capsys.readouterr().out


def test_cli_reports_a_bad_line(tmp_path, capsys) -> None:
    data = tmp_path / "bad.libsvm"
    data.write_text("1 1:1\n1 x:1\n")
    assert main(["compare", str(data), "--format", "libsvm", "--dim", "8",
                 "--output", str(tmp_path / "r.html")]) == 2  # fmt: skip
    assert "line 2" in capsys.readouterr().err


def test_grids_make_one_member_per_combination() -> None:
    assert parse_optimizers(["adagrad:lr=0.01,0.1,0.5", "ftrl", "adam:lr=1e-3,1e-2:eps=1e-6"]) == [
        {"name": "adagrad", "lr": 0.01}, {"name": "adagrad", "lr": 0.1},
        {"name": "adagrad", "lr": 0.5}, {"name": "ftrl"},
        {"name": "adam", "lr": 1e-3, "eps": 1e-6}, {"name": "adam", "lr": 1e-2, "eps": 1e-6},
    ]  # fmt: skip
    assert parse_optimizers(["adagrad,rmsprop"]) == [{"name": "adagrad"}, {"name": "rmsprop"}]
    assert parse_optimizers(["sgd:momentum=0"]) == [{"name": "sgd", "momentum": 0}]
    with pytest.raises(ValueError, match="expected NAME:KEY=V"):
        parse_optimizers(["adagrad:lr"])


def test_cli_grid_without_matplotlib_writes_self_contained_html_and_says_how_to_get_png(
    tmp_path, capsys, monkeypatch
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    data = tmp_path / "train.libsvm"
    write_libsvm(data)
    code = main(["compare", str(data), "--format", "libsvm", "--dim", "20", "--optimizers",
                 "adagrad:lr=0.01,0.5", "rmsprop:lr=0.001",
                 "--output", str(tmp_path / "cmp")])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "pip install 'adaserve[report]'" in out
    page = (tmp_path / "cmp.html").read_text()
    assert not (tmp_path / "cmp.png").exists() and not (tmp_path / "cmp").exists()
    for label in ("adagrad(lr=0.01)", "adagrad(lr=0.5)", "rmsprop(lr=0.001)"):
        assert f"</span> {label}</td>" in page and label in out
    assert page.count("<svg") == 2 and page.count("<polyline") == 6  # 3 curves, 3 histograms
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_cli_reports_a_bad_grid(tmp_path, capsys) -> None:
    data = tmp_path / "train.libsvm"
    write_libsvm(data, rows=10)
    args = ["compare", str(data), "--format", "libsvm", "--dim", "20", "--output",
            str(tmp_path / "r")]  # fmt: skip
    assert main([*args, "--optimizers", "adagrad:lr"]) == 2
    assert "expected NAME:KEY=V" in capsys.readouterr().err
    assert main([*args, "--optimizers", "adagrad:lr=-1"]) == 2
    assert "optimizer.lr" in capsys.readouterr().err


def test_rows_per_second_excludes_loading_the_kernels(tmp_path, monkeypatch) -> None:
    """Every member's loops are loaded on a throwaway model before the timed loop, and the
    members take turns at learning a batch first."""
    data = tmp_path / "train.libsvm"
    write_libsvm(data, rows=25_000)  # several batches of at most 10,000 rows
    events: list[str] = []
    real_warm_up, real_learn = compare_module.warm_up, OnlineLogisticRegression.learn_batch
    monkeypatch.setattr(
        compare_module, "warm_up", lambda models: (events.append("warm"), real_warm_up(models))
    )

    def learn(self, batch):  # type: ignore[no-untyped-def]
        if self.dim == 20:
            events.append(self.spec.name)
        return real_learn(self, batch)

    monkeypatch.setattr(OnlineLogisticRegression, "learn_batch", learn)
    members = compare([data], "libsvm", [{"name": "adagrad"}, {"name": "ftrl"}], dim=20)
    assert events[0] == "warm"
    pairs = list(zip(events[1::2], events[2::2], strict=True))  # (first, second) per batch
    assert len(pairs) >= 3
    assert pairs == [("adagrad", "ftrl"), ("ftrl", "adagrad")] * (len(pairs) // 2) + [
        ("adagrad", "ftrl")
    ] * (len(pairs) % 2)
    assert all(m["rows_per_second"] > 0 for m in members)
