"""End to end: the real ``adaserve serve`` process, streams of the shared data sets over HTTP,
the same progressive log-loss as the in-process library, and predictions on held-out data."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from datasets import REPO, shared_file
from servers import free_port, start_server, stop_server
from test_real_data import auc

from optim import OnlineLogisticRegression
from optim.formats import iter_file_batches
from service.client import AdaserveClient, StreamError


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    data_dir = tmp_path_factory.mktemp("data")
    process = start_server(data_dir, port)
    yield f"http://127.0.0.1:{port}"
    output = stop_server(process)
    assert f"127.0.0.1:{port}" in output and str(data_dir) in output


def in_process_log_loss(path: Path, fmt: str, optimizer: dict, dim: int) -> tuple[float, int]:
    model = OnlineLogisticRegression(optimizer, dim=dim)
    loss = weight = 0.0
    for batch in iter_file_batches(path, fmt, dim=dim):
        result = model.learn_batch(batch)
        w = batch.weights.sum() if batch.weights is not None else batch.n_rows
        loss, weight = loss + result.log_loss * w, weight + w
    return loss / weight, model.step


def test_stream_a9a_as_libsvm_then_predict(server: str) -> None:
    train, test = shared_file("a9a", "a9a"), shared_file("a9a", "a9a.t")
    optimizer = {"name": "adagrad", "lr": 0.1}
    with AdaserveClient(server) as client:
        client.create_model("a9a", optimizer, dim=124)
        summary = client.stream_file("a9a", train, "libsvm", progress=False)
        assert summary["error"] is None and summary["rows"] == 32_561
        expected, rows = in_process_log_loss(train, "libsvm", optimizer, 124)
        assert summary["rows"] == rows
        assert summary["log_loss"] == pytest.approx(expected, rel=1e-12)
        batch = next(iter_file_batches(test, "libsvm", dim=124, max_rows_per_batch=100_000))
        out = client.predict("a9a", _csr(batch))
        assert auc(out["probabilities"], batch.labels) >= 0.89
        assert client.get_model("a9a")["step"] == 32_561


def test_stream_rcv1_as_vw_text(server: str) -> None:
    train = shared_file("rcv1", "rcv1_small.dat")
    optimizer = {"name": "adam", "lr": 0.01}
    with AdaserveClient(server) as client:
        client.create_model("rcv1", optimizer, hash_bits=18)
        summary = client.stream_file("rcv1", train, "vw", progress=False)
        expected, rows = in_process_log_loss(train, "vw", optimizer, 2**18)
        assert summary["error"] is None and summary["rows"] == rows == 1_000
        assert summary["log_loss"] == pytest.approx(expected, rel=1e-12)


def test_malformed_line_stops_the_stream_and_says_where(server: str) -> None:
    with AdaserveClient(server) as client:
        client.create_model("bad", "sgd", dim=10)
        with pytest.raises(StreamError) as caught:
            client.stream_file("bad", b"1 1:1\n0 2:1\n1 3:x\n1 4:1\n", "libsvm", progress=False)
        assert caught.value.rows == 2 and caught.value.line == 3
        assert caught.value.summary["error"]["line"] == 3
        assert client.get_model("bad")["step"] == 2


def _csr(batch):
    import scipy.sparse as sp

    return sp.csr_array(
        (batch.values, batch.indices, batch.indptr), shape=(batch.n_rows, batch.dim)
    )


def test_readme_python_client_example(server: str, tmp_path: Path, monkeypatch) -> None:
    from test_readme import PYTHON_BLOCKS

    monkeypatch.chdir(tmp_path)
    lines = shared_file("a9a", "a9a").read_text().splitlines()[:200]
    (tmp_path / "train.libsvm").write_text("\n".join(lines) + "\n")
    blocks = [b for b in PYTHON_BLOCKS if "AdaserveClient" in b]
    assert blocks
    for block in blocks:
        exec(compile(block.replace("http://127.0.0.1:8080", server), "README", "exec"), {})
    assert AdaserveClient(server).get_model("clicks")["step"] == 201


def test_readme_curl_examples(server: str) -> None:
    readme = (REPO / "README.md").read_text()
    blocks = [b for b in readme.split("```sh\n")[1:] if "curl" in b]
    assert blocks, "the README shows curl examples"
    for block in blocks:
        script = block.split("```")[0].replace("http://127.0.0.1:8080", server)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr + done.stdout
    assert np.isfinite(AdaserveClient(server).get_model("iq")["metrics"]["overall"]["log_loss"])
