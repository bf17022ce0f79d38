"""AdaserveClient against the real server: experiments, and streams that stop on an error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import scipy.sparse as sp
from servers import free_port, start_server, stop_server

from service.client import AdaserveClient, AdaserveError, StreamError

LIBSVM = b"1 1:1 2:0.5\n0 2:1\n1 3:2\n"


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[AdaserveClient]:
    process = start_server(tmp_path_factory.mktemp("client-data"), port := free_port())
    with AdaserveClient(f"http://127.0.0.1:{port}", timeout=120) as client:
        yield client
    stop_server(process)


def test_stream_file_raises_with_the_line_reason_and_rows_learned(client: AdaserveClient) -> None:
    client.create_model("s", hash_bits=8)
    assert client.stream_file("s", LIBSVM, "libsvm", progress=False)["rows"] == 3
    with pytest.raises(StreamError) as caught:
        client.stream_file("s", LIBSVM + b"1 x:1\n1 1:1\n", "libsvm", progress=False)
    error = caught.value
    assert error.line == 4 and error.rows == 3 and error.reason
    assert error.summary["done"] is True and isinstance(error, AdaserveError)
    assert "line 4" in str(error) and "3 rows learned" in str(error)
    assert client.get_model("s")["step"] == 6  # the rows before the bad line were learned


def test_vw_text_sent_as_libsvm_is_an_error_not_a_success(client: AdaserveClient) -> None:
    client.create_model("v", hash_bits=8)
    with pytest.raises(StreamError) as caught:
        client.stream_file("v", b"1 |s IQ:1.2 CGPA:0.8\n", "libsvm", progress=False)
    assert caught.value.line == 1 and caught.value.rows == 0


def test_experiment_methods(client: AdaserveClient) -> None:
    created = client.create_experiment(
        "e", ["adagrad", {"name": "adam", "lr": 0.01}, {"optimizer": "ftrl", "lazy": "frozen"}],
        hash_bits=8,
    )  # fmt: skip
    models = [m["model"] for m in created["members"]]
    assert len(models) == 3
    assert [m["optimizer"]["name"] for m in created["members"]] == ["adagrad", "adam", "ftrl"]
    assert created["members"][1]["optimizer"]["lr"] == 0.01
    assert created["members"][2]["lazy"] == "frozen"
    result = client.update_experiment("e", rows=[{"IQ": 1.2}, {"CGPA": 0.5}], labels=[1, 0])
    assert result["rows"] == 2 and set(result["members"]) == set(models)
    X = sp.csr_array(([1.0, 2.0], ([0, 1], [3, 5])), shape=(2, 256))
    assert client.update_experiment("e", X, labels=[0, 1])["rows"] == 2
    summary = client.stream_experiment_file("e", LIBSVM, "libsvm", progress=False)
    assert summary["rows"] == 3 and summary["error"] is None
    with pytest.raises(StreamError) as caught:
        client.stream_experiment_file("e", b"1 1:1\nnot a row\n", "libsvm", progress=False)
    assert caught.value.line == 2 and caught.value.rows == 1
    board = client.leaderboard("e")
    assert sorted(board["leaderboard"]) == sorted(models)
    assert all(m["rows"] == 8 for m in board["members"])
    assert [e["name"] for e in client.list_experiments()] == ["e"]
    client.delete_experiment("e")
    assert client.list_experiments() == []
    with pytest.raises(AdaserveError) as missing:
        client.leaderboard("e")
    assert missing.value.status == 404
