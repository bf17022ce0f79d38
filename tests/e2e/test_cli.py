"""``adaserve train`` and ``adaserve predict`` (adaserve_cli/train.py), run in-process through
``main``.

The saved model must be exactly what an in-process ``OnlineLogisticRegression`` learns over
``iter_file_batches`` of the same file; the service must import it. The click streams come from
``../shared/tools/make_clicks.py`` (skipped when absent); a small generated libsvm file needs
nothing beside the repo.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from datasets import MAKE_CLICKS, REPO

from adaserve_cli import train as train_module
from optim import OnlineLogisticRegression
from optim.formats import FORMATS, iter_file_batches
from optim.metrics import auc as metrics_auc
from optim.metrics import log_losses
from service.cli import main

TINY_DIM = 16
ADAGRAD = ["--optimizer", "adagrad", "--lr", "0.3"]


def tiny_libsvm(path: Path, rows: int = 300, seed: int = 0, bad_line: int | None = None) -> Path:
    """A libsvm file over ``TINY_DIM`` coordinates, with a comment and a blank line, labels from
    a hidden logistic model; ``bad_line`` (1-based) replaces that line by a malformed one."""
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=TINY_DIM)
    lines = ["# a comment line", ""]
    for _ in range(rows):
        idx = np.sort(rng.choice(TINY_DIM, size=rng.integers(1, 6), replace=False))
        val = rng.normal(size=idx.size).round(4)
        y = int(rng.random() < 1 / (1 + math.exp(-float(true_w[idx] @ val))))
        lines.append(f"{2 * y - 1} " + " ".join(f"{i}:{v}" for i, v in zip(idx, val, strict=True)))
    if bad_line is not None:
        lines[bad_line - 1] = "1 3:0.5 99:1.0"  # index 99 is outside [0, 16)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """2,000 click rows in libsvm, vw and criteo text, hashed into 2**12 coordinates."""
    if not MAKE_CLICKS.is_file():
        pytest.skip(f"{MAKE_CLICKS} is absent (../shared lives beside the repo, not in it)")
    folder = tmp_path_factory.mktemp("clicks")
    files = {}
    for fmt in ("libsvm", "vw", "criteo"):
        path = folder / f"clicks.{fmt}"
        with path.open("wb") as out:
            subprocess.run(
                [
                    sys.executable,
                    str(MAKE_CLICKS),
                    "--rows",
                    "2000",
                    "--format",
                    fmt,
                    "--bits",
                    "12",
                ],
                stdout=out,
                stderr=subprocess.DEVNULL,
                check=True,
            )
        files[fmt] = path
    return files


def size_args(fmt: str) -> list[str]:
    # make_clicks writes 1-based libsvm indices in [1, 2**12]: dim 2**12 + 1. vw/criteo hash.
    return ["--dim", str(2**12 + 1)] if fmt == "libsvm" else ["--hash-bits", "12"]


def reference(
    paths: list[Path], fmt: str, *, passes: int = 1, **config: object
) -> OnlineLogisticRegression:
    """The in-process run the CLI must reproduce."""
    model = OnlineLogisticRegression(**config)  # type: ignore[arg-type]
    for _ in range(passes):
        for path in paths:
            for batch in iter_file_batches(path, fmt, dim=model.dim, hash_seed=model.hasher.seed):
                model.learn_batch(batch)
    return model


def assert_same_model(saved: Path, expected: OnlineLogisticRegression) -> OnlineLogisticRegression:
    got = OnlineLogisticRegression.load(saved)
    assert got.config == expected.config
    assert got.step == expected.step
    assert got.table.dtype == expected.table.dtype
    assert got.table.tobytes() == expected.table.tobytes()
    assert got.counters.tobytes() == expected.counters.tobytes()
    for name, value in expected.metrics.state().items():
        np.testing.assert_array_equal(got.metrics.state()[name], value, err_msg=name)
    assert got.metrics.to_dict() == expected.metrics.to_dict()
    return got


def summary_value(stderr: str, key: str) -> str:
    found = re.search(rf"^{re.escape(key)}\s+(\S+)", stderr, re.MULTILINE)
    assert found, stderr
    return found.group(1)


# ------------------------------------------------------------------------------------ train
def test_formats_match_the_parsers() -> None:
    assert train_module.FORMATS == FORMATS


def test_train_tiny_libsvm_equals_in_process_run(tmp_path: Path, capsys) -> None:
    data = tiny_libsvm(tmp_path / "tiny.libsvm")
    out = tmp_path / "tiny.npz"
    assert main(["train", str(data), "--format", "libsvm", "--dim", "16", *ADAGRAD,
                 "--output", str(out)]) == 0  # fmt: skip
    expected = reference([data], "libsvm", optimizer={"name": "adagrad", "lr": 0.3}, dim=16)
    assert expected.step == 300
    assert_same_model(out, expected)
    err = capsys.readouterr().err
    assert summary_value(err, "rows") == "300"
    loss = expected.metrics.to_dict()["overall"]["log_loss"]
    assert float(summary_value(err, "log-loss")) == pytest.approx(loss, abs=1e-6)
    assert float(summary_value(err, "rows/s")) > 0


@pytest.mark.parametrize("fmt", ["libsvm", "vw", "criteo"])
def test_train_click_streams_equal_in_process_run(
    fmt: str, clicks: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "m.npz"
    args = ["train", str(clicks[fmt]), "--format", fmt, *size_args(fmt), "--output", str(out)]
    assert main([*args, "--optimizer", "ftrl", "--param", "alpha=0.1", "--quiet"]) == 0
    size = {"dim": 2**12 + 1} if fmt == "libsvm" else {"hash_bits": 12}
    expected = reference([clicks[fmt]], fmt, optimizer={"name": "ftrl", "alpha": 0.1}, **size)
    assert expected.step == 2000
    assert_same_model(out, expected)


def test_train_hyperparameters_lazy_dtype_seed_intercept(clicks: dict[str, Path], tmp_path) -> None:
    out = tmp_path / "adam.npz"
    assert main([
        "train", str(clicks["vw"]), "--format", "vw", "--hash-bits", "12", "--hash-seed", "7",
        "--optimizer", "adam", "--lr", "0.01", "--param", "betas=0.8,0.99", "--param", "eps=1e-7",
        "--lazy", "frozen", "--dtype", "float32", "--no-intercept", "--quiet", "-o", str(out),
    ]) == 0  # fmt: skip
    expected = reference(
        [clicks["vw"]], "vw",
        optimizer={"name": "adam", "lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-7},
        hash_bits=12, hash_seed=7, lazy="frozen", dtype="float32", fit_intercept=False,
    )  # fmt: skip
    got = assert_same_model(out, expected)
    assert got.config["optimizer"]["betas"] == [0.8, 0.99]
    assert got.table.dtype == np.float32 and got.hasher.seed == 7 and not got.fit_intercept


def test_passes_two_learns_twice(tmp_path: Path, capsys) -> None:
    data = tiny_libsvm(tmp_path / "tiny.libsvm")
    out = tmp_path / "twice.npz"
    argv = ["train", str(data), "--format", "libsvm", "--dim", "16", *ADAGRAD, "--passes", "2"]
    assert main([*argv, "-o", str(out), "--quiet"]) == 0
    expected = reference([data], "libsvm", passes=2, optimizer={"name": "adagrad", "lr": 0.3},
                         dim=16)  # fmt: skip
    assert expected.step == 600
    assert_same_model(out, expected)
    assert summary_value(capsys.readouterr().err, "rows") == "600"


def test_several_files_and_gzip(tmp_path: Path) -> None:
    a = tiny_libsvm(tmp_path / "a.libsvm", rows=120, seed=1)
    b = tiny_libsvm(tmp_path / "b.libsvm", rows=80, seed=2)
    b_gz = tmp_path / "b.libsvm.gz"
    b_gz.write_bytes(gzip.compress(b.read_bytes()))
    out = tmp_path / "ab.npz"
    argv = ["train", str(a), str(b_gz), "--format", "libsvm", "--dim", "16", *ADAGRAD]
    assert main([*argv, "-o", str(out), "-q"]) == 0
    expected = reference([a, b], "libsvm", optimizer={"name": "adagrad", "lr": 0.3}, dim=16)
    assert expected.step == 200
    assert_same_model(out, expected)


def test_stdin(tmp_path: Path, monkeypatch) -> None:
    data = tiny_libsvm(tmp_path / "tiny.libsvm")
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(data.read_bytes())))
    out = tmp_path / "stdin.npz"
    assert main(["train", "-", "--format", "libsvm", "--dim", "16", *ADAGRAD, "-o", str(out)]) == 0
    expected = reference([data], "libsvm", optimizer={"name": "adagrad", "lr": 0.3}, dim=16)
    assert_same_model(out, expected)


def test_stdin_cannot_be_read_twice(tmp_path: Path, capsys) -> None:
    argv = ["train", "-", "--format", "libsvm", "--dim", "16", "--passes", "2"]
    assert main(argv) == 2
    assert "stdin" in capsys.readouterr().err


def test_malformed_line_exits_2_and_writes_no_model(tmp_path: Path, capsys) -> None:
    # lines 1-2 are a comment and a blank line: rows 1..7 are lines 3..9, line 10 is bad
    data = tiny_libsvm(tmp_path / "bad.libsvm", bad_line=10)
    out = tmp_path / "bad.npz"
    argv = ["train", str(data), "--format", "libsvm", "--dim", "16", *ADAGRAD, "-o", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{data}: line 10, field 'index': 99 is outside [0, 16)" in err
    assert "7 rows were learned before it; no model was written (--save-partial writes it)" in err
    assert not out.exists()

    assert main([*argv, "--save-partial"]) == 2
    err = capsys.readouterr().err
    assert "line 10" in err and f"the partial model was written to {out}" in err
    partial = OnlineLogisticRegression.load(out)
    assert partial.step == 7
    expected = OnlineLogisticRegression({"name": "adagrad", "lr": 0.3}, dim=16)
    expected.learn_batch(next(iter_file_batches(tiny_libsvm(tmp_path / "ok.libsvm", rows=7),
                                                "libsvm", dim=16)))  # fmt: skip
    assert partial.table.tobytes() == expected.table.tobytes()


def test_malformed_line_names_the_file_and_pass(tmp_path: Path, capsys) -> None:
    good = tiny_libsvm(tmp_path / "good.libsvm", rows=20)
    bad = tiny_libsvm(tmp_path / "bad.libsvm", rows=20, bad_line=5)
    argv = ["train", str(good), str(bad), "--format", "libsvm", "--dim", "16", "--passes", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{bad} (pass 1): line 5" in err and "22 rows were learned" in err


def test_a_bad_setting_exits_2_before_reading(tmp_path: Path, capsys) -> None:
    data = tiny_libsvm(tmp_path / "tiny.libsvm")
    out = tmp_path / "never.npz"
    for extra, message in [
        (
            ["--optimizer", "adagrad", "--param", "lrr=0.1"],
            "unknown hyperparameter(s) ['lrr'] for adagrad",
        ),
        (["--optimizer", "adamw"], "unknown optimizer 'adamw'"),
        (["--optimizer", "adagrad", "--param", "lr=-1"], "'optimizer.lr': must be in (0, inf)"),
        (["--lr", "0.1"], "give --optimizer too (the default, auto, has none to set)"),
    ]:
        argv = ["train", str(data), "--format", "libsvm", "--dim", "16", "-o", str(out), *extra]
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: usage errors exit 2
        main(["train", str(data), "--format", "libsvm", "--dim", "16", "--param", "lr"])
    assert exc.value.code == 2
    assert "expected name=value" in capsys.readouterr().err
    assert not out.exists()


def test_missing_input_or_unwritable_output_exits_1(tmp_path: Path, capsys) -> None:
    data = tiny_libsvm(tmp_path / "tiny.libsvm")
    assert main(["train", str(tmp_path / "nope.libsvm"), "--format", "libsvm", "--dim", "16"]) == 1
    assert "nope.libsvm: does not exist" in capsys.readouterr().err
    argv = ["train", str(data), "--format", "libsvm", "--dim", "16"]
    assert main([*argv, "-o", str(tmp_path / "no" / "dir" / "m.npz")]) == 1
    assert "is not writable" in capsys.readouterr().err


def test_progress_table_doubling_and_fixed(tmp_path: Path, capsys) -> None:
    data = tiny_libsvm(tmp_path / "tiny.libsvm")
    model = OnlineLogisticRegression({"name": "adagrad", "lr": 0.3}, dim=16)
    batch = next(iter_file_batches(data, "libsvm", dim=16))
    losses = log_losses(model.learn_batch(batch).margins, batch.labels)
    cumulative = np.cumsum(losses) / np.arange(1, losses.size + 1)

    def table(err: str) -> list[list[float]]:
        lines = err.splitlines()
        start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rows", "log-loss"])
        rows = []
        for line in lines[start + 1 :]:
            if line == "finished":
                return rows
            rows.append([float(x) for x in line.split()])
        raise AssertionError(err)

    argv = ["train", str(data), "--format", "libsvm", "--dim", "16", *ADAGRAD]
    assert main(argv) == 0
    lines = table(capsys.readouterr().err)
    assert [int(r[0]) for r in lines] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    for rows, overall, _since, rate in lines:
        assert overall == pytest.approx(cumulative[int(rows) - 1], abs=1e-6)
        assert rate > 0
    assert lines[0][2] == pytest.approx(losses[0], abs=1e-6)
    assert lines[3][2] == pytest.approx(losses[4:8].mean(), abs=1e-6)  # rows 5..8

    assert main([*argv, "--progress-every", "100"]) == 0
    lines = table(capsys.readouterr().err)
    assert [int(r[0]) for r in lines] == [100, 200, 300]
    assert lines[2][2] == pytest.approx(losses[200:300].mean(), abs=1e-6)

    assert main([*argv, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "since last" not in err and "finished" in err


# ------------------------------------------------------------------------------------ predict
def pairwise_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels > 0.5], scores[labels < 0.5]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_predict_matches_predict_proba(tmp_path: Path, capsys) -> None:
    data = tiny_libsvm(tmp_path / "tiny.libsvm")
    model_path = tmp_path / "m.npz"
    assert main(["train", str(data), "--format", "libsvm", "--dim", "16", *ADAGRAD,
                 "-o", str(model_path), "-q"]) == 0  # fmt: skip
    capsys.readouterr()
    preds = tmp_path / "preds.txt"
    argv = ["predict", str(data), "--model", str(model_path), "--format", "libsvm"]
    assert main([*argv, "--output", str(preds)]) == 0
    err = capsys.readouterr().err

    model = OnlineLogisticRegression.load(model_path)
    batch = next(iter_file_batches(data, "libsvm", dim=16))
    expected = model.predict_proba(batch)[:, 1]
    got = np.array([float(line) for line in preds.read_text().splitlines()])
    np.testing.assert_array_equal(got, expected)  # repr() round-trips every float exactly

    margins = model.decision_function(batch)
    loss = float(log_losses(margins, batch.labels).mean())
    assert float(re.search(r"log-loss (\S+)", err).group(1)) == pytest.approx(loss, abs=1e-6)
    auc = pairwise_auc(expected, batch.labels)
    assert float(re.search(r"AUC (\S+)", err).group(1)) == pytest.approx(auc, abs=1e-6)
    assert metrics_auc(margins, batch.labels) == pytest.approx(auc, abs=1e-12)
    assert model.step == 300  # predicting never changes the file
    assert OnlineLogisticRegression.load(model_path).table.tobytes() == model.table.tobytes()

    # to stdout, and --no-labels: the same probabilities, no metrics
    assert main([*argv, "--no-labels"]) == 0
    out, err = capsys.readouterr()
    np.testing.assert_array_equal(np.array([float(x) for x in out.split()]), expected)
    assert "log-loss" not in err and "AUC" not in err


def test_predict_unlabeled_rows_and_criteo(clicks: dict[str, Path], tmp_path: Path, capsys):
    model_path = tmp_path / "c.npz"
    assert main(["train", str(clicks["criteo"]), "--format", "criteo", "--hash-bits", "12",
                 "-o", str(model_path), "-q"]) == 0  # fmt: skip
    unlabeled = tmp_path / "unlabeled.tsv"
    lines = clicks["criteo"].read_text().splitlines()
    unlabeled.write_text("".join(line.split("\t", 1)[1] + "\n" for line in lines))
    capsys.readouterr()
    argv = ["predict", "--model", str(model_path), "--format", "criteo"]
    assert main([*argv, str(unlabeled)]) == 0
    out, err = capsys.readouterr()
    assert len(out.split()) == 2000 and "log-loss" not in err and "no label" in err
    assert main([*argv, str(clicks["criteo"])]) == 0
    labeled_out, err = capsys.readouterr()
    assert labeled_out == out and "AUC" in err


def test_predict_malformed_line_exits_2(tmp_path: Path, capsys) -> None:
    model_path = tmp_path / "m.npz"
    OnlineLogisticRegression("adagrad", dim=16).save(model_path)
    data = tiny_libsvm(tmp_path / "bad.libsvm", bad_line=4)
    preds = tmp_path / "p.txt"
    argv = ["predict", str(data), "-m", str(model_path), "--format", "libsvm", "-o", str(preds)]
    assert main(argv) == 2
    assert "line 4, field 'index'" in capsys.readouterr().err
    assert not preds.exists()
    assert main(["predict", str(data), "-m", str(tmp_path / "none.npz"), "--format", "vw"]) == 1


# ------------------------------------------------------------------------------------ service
def test_the_service_imports_the_trained_file(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    data = tiny_libsvm(tmp_path / "tiny.libsvm")
    model_path = tmp_path / "trained.npz"
    assert main(["train", str(data), "--format", "libsvm", "--dim", "16", *ADAGRAD,
                 "-o", str(model_path), "-q"]) == 0  # fmt: skip
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with TestClient(create_app(Settings(data_dir=data_dir, warm_kernels=False))) as client:
        created = client.post("/v1/models", json={
            "name": "trained", "dim": 16, "optimizer": {"name": "adagrad", "lr": 0.3},
        })  # fmt: skip
        assert created.status_code == 201, created.text
        response = client.post(
            "/v1/models/trained/import",
            content=model_path.read_bytes(),
            headers={"Content-Type": "application/x-adaserve-model"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["step"] == 300
        info = client.get("/v1/models/trained").json()
        assert info["step"] == 300
        exported = client.get("/v1/models/trained/export").content
    served = OnlineLogisticRegression.load(io.BytesIO(exported))
    assert served.table.tobytes() == OnlineLogisticRegression.load(model_path).table.tobytes()


# ------------------------------------------------------------------------------------ process
def test_console_entry_exit_codes(tmp_path: Path) -> None:
    """The real entry point (`python -m service`, as the `adaserve` script): exit codes."""
    good = tiny_libsvm(tmp_path / "good.libsvm")
    bad = tiny_libsvm(tmp_path / "bad.libsvm", bad_line=6)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service", *argv], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300)  # fmt: skip

    ok = run("train", str(good), "--format", "libsvm", "--dim", "16", "-o", "m.npz")
    assert ok.returncode == 0, ok.stderr
    assert "finished" in ok.stderr and (tmp_path / "m.npz").is_file()
    failed = run("train", str(bad), "--format", "libsvm", "--dim", "16", "-o", "bad.npz")
    assert failed.returncode == 2 and "line 6" in failed.stderr
    assert not (tmp_path / "bad.npz").exists()
    assert run("train", "missing.libsvm", "--format", "libsvm", "--dim", "16").returncode == 1
    usage = run("train", str(good), "--format", "csv", "--dim", "16")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


def test_read_ahead_keeps_order_errors_and_stops_when_closed() -> None:
    import threading

    def items():
        yield from range(50)
        raise ValueError("after 50")

    got = []
    with pytest.raises(ValueError, match="after 50"):
        for item in train_module.read_ahead(items()):
            got.append(item)
    assert got == list(range(50))

    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    reader = train_module.read_ahead(endless())
    assert [next(reader) for _ in range(5)] == [0, 1, 2, 3, 4]
    reader.close()
    assert closed.wait(5), "the reader thread did not stop"
