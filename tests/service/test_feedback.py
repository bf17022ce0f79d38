"""Delayed labels (issue 19): predict with ids, label later, exactly as if learned then."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import httpx
import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient

from optim import ModelFileError, OnlineLogisticRegression
from optim.portfolio import PortfolioLogisticRegression, load_model, new_model
from service.app import create_app
from service.settings import Settings
from service.storage import ModelStorage

DIM = 64
OPTIMIZER = {"name": "adam", "lr": 0.05}
# A single model and the portfolio (optimizer auto: it serves its mixture's margins; a label
# makes every member and the mixture learn the row)
OPTIMIZERS = [pytest.param(OPTIMIZER, id="adam"), pytest.param("auto", id="auto")]


def rows(seed: int, n: int) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    return sp.random(n, DIM, density=0.15, format="csr", random_state=rng)


def csr(X: sp.csr_array, **extra: Any) -> dict[str, Any]:
    return {"indptr": X.indptr.tolist(), "indices": X.indices.tolist(),
            "values": X.data.tolist(), **extra}  # fmt: skip


def client_for(tmp_path: Any, **settings: Any) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path, warm_kernels=False, **settings)))


def create(
    client: TestClient, name: str = "m", ttl: float = 3600, on_expiry: str = "negative",
    optimizer: object = OPTIMIZER,
):  # fmt: skip
    r = client.post(
        "/v1/models",
        json={"name": name, "dim": DIM, "optimizer": optimizer,
              "feedback": {"ttl_seconds": ttl, "on_expiry": on_expiry}},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()


def exported(
    client: TestClient, name: str = "m"
) -> OnlineLogisticRegression | PortfolioLogisticRegression:
    r = client.get(f"/v1/models/{name}/export")
    assert r.status_code == 200
    return load_model(io.BytesIO(r.content))


def assert_same_state(model: Any, expected: Any) -> None:
    """The same learned state (1e-12): a portfolio's every member and its mixture."""
    pairs = [(model, expected)]
    if isinstance(expected, PortfolioLogisticRegression):
        pairs = [(model.member(name), m) for name, m in expected.members.items()]
        np.testing.assert_allclose(
            model.mixture_weights(), expected.mixture_weights(), rtol=0, atol=1e-12
        )
        np.testing.assert_allclose(model._combination, expected._combination, rtol=0, atol=1e-12)
        assert model.metrics.to_dict() == expected.metrics.to_dict()
    for mine, theirs in pairs:
        np.testing.assert_allclose(mine.table, theirs.table, rtol=0, atol=1e-12)
        assert mine.counters.tobytes() == theirs.counters.tobytes()
        assert mine.step == theirs.step


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_labels_for_80_of_100_rows_in_a_shuffled_order_learn_them_in_that_order(
    tmp_path, optimizer: object
) -> None:
    X = rows(0, 100)
    ids = [f"imp-{k}" for k in range(100)]
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 100)
    weights = rng.uniform(0.5, 2.0, 100)
    order = rng.permutation(100)[:80]
    with client_for(tmp_path) as client:
        info = create(client, optimizer=optimizer)
        assert info["config"]["feedback"] == {"ttl_seconds": 3600.0, "on_expiry": "negative"}
        assert info["feedback"]["pending"] == 0
        r = client.post("/v1/models/m/predict", json=csr(X, ids=ids))
        assert r.status_code == 200, r.text
        served = np.array(r.json()["probabilities"])
        assert exported(client).step == 0  # predicting learns nothing
        # in three requests: JSON, JSON with weights, NDJSON
        parts = [order[:30], order[30:55], order[55:]]
        r = client.post(
            "/v1/models/m/feedback",
            json={"ids": [ids[k] for k in parts[0]], "labels": labels[parts[0]].tolist()},
        )
        assert r.status_code == 200, r.text
        assert (r.json()["rows"], r.json()["step"]) == (30, 30)
        r = client.post(
            "/v1/models/m/feedback",
            json={"ids": [ids[k] for k in parts[1]], "labels": labels[parts[1]].tolist(),
                  "weights": weights[parts[1]].tolist()},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        lines = "\n".join(
            f'{{"id": "{ids[k]}", "label": {labels[k]}, "weight": {float(weights[k])!r}}}'
            for k in parts[2]
        )
        r = client.post(
            "/v1/models/m/feedback",
            content=lines + "\n",
            headers={"content-type": "application/x-ndjson"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["step"] == 80
        model = exported(client)
        info = client.get("/v1/models/m").json()

    expected = new_model(optimizer, dim=DIM)
    np.testing.assert_allclose(served, expected.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
    w = np.ones(100)
    w[parts[1]] = weights[parts[1]]
    w[parts[2]] = weights[parts[2]]
    for part in parts:
        expected.learn(X[part], labels[part], w[part])
    assert_same_state(model, expected)
    assert model.step == expected.step == 80

    feedback = info["feedback"]
    assert (feedback["pending"], feedback["labelled"], feedback["expired"]) == (20, 80, 0)
    assert feedback["join_rate"] == 1.0
    p = served[order]
    y = labels[order]
    losses = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    served_log_loss = float(np.sum(w[order] * losses) / np.sum(w[order]))
    assert feedback["served"]["overall"]["log_loss"] == pytest.approx(served_log_loss, rel=1e-9)
    assert feedback["served"]["rows"] == 80
    assert feedback["delay_seconds"]["labels"] == 80
    assert feedback["delay_seconds"]["p50"] >= 0
    # the model's own pending table agrees (and is exported with it)
    assert sorted(model.feedback.pending) == sorted(ids[k] for k in set(range(100)) - set(order))
    assert model.feedback.served.rows == 80


def test_duplicate_unknown_and_labelled_ids_are_refused_and_change_nothing(tmp_path) -> None:
    X = rows(2, 4)
    with client_for(tmp_path) as client:
        create(client)
        assert client.post("/v1/models/m/predict", json=csr(X, ids=list("abcd"))).status_code == 200
        # pending already, or twice in one request: 409 naming them, nothing remembered
        r = client.post("/v1/models/m/predict", json=csr(X, ids=["e", "b", "f", "f"]))
        assert r.status_code == 409, r.text
        assert r.json()["error"] == "duplicate_ids"
        assert r.json()["where"]["ids"] == ["b", "f"]
        assert client.get("/v1/models/m").json()["feedback"]["pending"] == 4
        # one id per row
        r = client.post("/v1/models/m/predict", json=csr(X, ids=["x"]))
        assert r.status_code == 422 and r.json()["where"]["field"] == "ids"
        r = client.post("/v1/models/m/feedback", json={"ids": ["a"], "labels": [1]})
        assert r.status_code == 200
        before = exported(client)
        for ids, why in (
            (["b", "zz"], "unknown"), (["a", "c"], "already labelled"), (["c", "c"], "twice")
        ):  # fmt: skip
            r = client.post("/v1/models/m/feedback", json={"ids": ids, "labels": [1, 0]})
            assert r.status_code == 422, r.text
            assert r.json()["error"] == "invalid_ids"
            assert why in r.json()["detail"]
            assert r.json()["where"]["ids"] == [ids[1]] if why != "already labelled" else ["a"]
        r = client.post("/v1/models/m/feedback", json={"ids": ["b", "c"], "labels": [1, 7]})
        assert r.status_code == 422 and r.json()["where"] == {"row": 1, "field": "labels"}
        ndjson = {"content-type": "application/x-ndjson"}
        for content, where in (
            (b'{"id": "b", "label": 1}\n\n{"id": "c", "label": 1', {"row": 2}),
            (b'{"id": "b", "label": 1}\n{"id": "c"}\n', {"row": 1}),
            (b'{"id": "b", "label": 1}\n{"id": "zz", "label": 0}\n', {"field": "ids"}),
        ):
            r = client.post("/v1/models/m/feedback", content=content, headers=ndjson)
            assert r.status_code == 422, r.text
            assert where.items() <= r.json()["where"].items(), r.json()
        after = exported(client)
        assert after.table.tobytes() == before.table.tobytes()
        assert sorted(after.feedback.pending) == ["b", "c", "d"]  # none claimed for good
        # a model without feedback
        client.post("/v1/models", json={"name": "plain", "dim": DIM})
        r = client.post("/v1/models/plain/predict", json=csr(X, ids=list("abcd")))
        assert r.status_code == 422 and r.json()["error"] == "feedback_not_enabled"
        r = client.post("/v1/models/plain/feedback", json={"ids": ["a"], "labels": [1]})
        assert r.status_code == 422 and r.json()["error"] == "feedback_not_enabled"
        # a body that only has a feature named "ids" predicts as before
        r = client.post("/v1/models/plain/predict", json={"rows": [{"features": {"ids": 1}}]})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("on_expiry", ["negative", "drop"])
def test_rows_expire_after_the_ttl_by_policy_in_prediction_order(
    tmp_path, on_expiry, optimizer: object
) -> None:
    X = rows(3, 6)
    with client_for(tmp_path) as client:
        create(client, ttl=1, on_expiry=on_expiry, optimizer=optimizer)
        assert client.post("/v1/models/m/predict", json=csr(X[:3], ids=["a", "b", "c"])).is_success
        assert client.post("/v1/models/m/predict", json=csr(X[3:4], ids=["d"])).is_success
        time.sleep(1.2)
        assert client.post("/v1/models/m/predict", json=csr(X[4:], ids=["e", "f"])).is_success
        r = client.post("/v1/models/m/feedback", json={"ids": ["b"], "labels": [1]})
        assert r.status_code == 422, r.text  # expired before its label came
        assert "expired" in r.json()["detail"] and r.json()["where"]["ids"] == ["b"]
        r = client.post("/v1/models/m/feedback", json={"ids": ["e"], "labels": [1]})
        assert r.status_code == 200, r.text
        info = client.get("/v1/models/m").json()["feedback"]
        model = exported(client)
    expected = new_model(optimizer, dim=DIM)
    if on_expiry == "negative":
        expected.learn(X[:4], np.zeros(4))  # oldest first, one batch
        assert (info["expired"], info["dropped"]) == (4, 0)
    else:
        assert (info["expired"], info["dropped"]) == (0, 4)
    expected.learn(X[4:5], [1])
    assert_same_state(model, expected)
    assert info["pending"] == 1 and info["labelled"] == 1
    assert info["join_rate"] == pytest.approx(1 / 5)
    # the log replays the expiries exactly (the snapshot written at exit removed)
    directory = tmp_path / "models" / "m"
    (directory / f"snapshot-{model.step}.npz").unlink()
    recovered = ModelStorage(directory).recover()
    assert recovered.snapshot_step == 0 and recovered.dropped == []
    assert_same_state(recovered.model, expected)
    assert recovered.model.feedback.summary() == model.feedback.summary()


def test_housekeeping_expires_rows_without_any_request(tmp_path) -> None:
    with client_for(tmp_path, fsync_interval_ms=50) as client:
        create(client, ttl=0.2)
        assert client.post("/v1/models/m/predict", json=csr(rows(4, 2), ids=["a", "b"])).is_success
        for _ in range(200):  # waits for the housekeeping sweep (every 50 ms here)
            if client.get("/v1/models/m").json()["feedback"]["pending"] == 0:
                break
            time.sleep(0.05)
        info = client.get("/v1/models/m").json()
    assert info["feedback"]["expired"] == 2 and info["step"] == 2


def test_pending_rows_count_in_the_memory_budget(tmp_path) -> None:
    model_bytes = OnlineLogisticRegression(OPTIMIZER, dim=DIM, feedback={"ttl_seconds": 60})
    budget = model_bytes.memory_bytes + 5_000  # room for a few pending rows
    with client_for(tmp_path, memory_budget_bytes=budget) as client:
        create(client)
        accepted = 0
        for k in range(100):
            r = client.post("/v1/models/m/predict", json=csr(rows(k, 1), ids=[f"r{k}"]))
            if r.status_code != 200:
                break
            accepted += 1
        assert r.status_code == 429, r.text
        assert r.json()["error"] == "too_many_pending"
        assert "memory budget" in r.json()["detail"]
        info = client.get("/v1/models/m").json()["feedback"]
        assert info["pending"] == accepted >= 1  # the refused row was not remembered
        # labelling frees room again
        r = client.post("/v1/models/m/feedback", json={"ids": ["r0"], "labels": [1]})
        assert r.status_code == 200
        r = client.post("/v1/models/m/predict", json=csr(rows(0, 1), ids=["again"]))
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_pending_rows_survive_a_restart_and_are_exported_and_imported(
    tmp_path, optimizer: object
) -> None:
    X = rows(5, 10)
    ids = [f"i{k}" for k in range(10)]
    with client_for(tmp_path / "a") as client:
        create(client, optimizer=optimizer)
        assert client.post("/v1/models/m/predict", json=csr(X, ids=ids)).is_success
        assert client.post("/v1/models/m/feedback", json={"ids": ids[:3], "labels": [1, 0, 1]})
        r = client.post("/v1/models/m/snapshot")
        assert r.status_code == 200, r.text
        assert client.post(
            "/v1/models/m/feedback", json={"ids": ids[3:5], "labels": [0, 1]}
        ).is_success
        assert client.post("/v1/models/m/predict", json=csr(X[:1], ids=["late"])).is_success
        file = client.get("/v1/models/m/export").content
    # recovered from the log after the snapshot at step 3 (the one written at exit removed)
    directory = tmp_path / "a" / "models" / "m"
    (directory / "snapshot-5.npz").unlink()
    storage = ModelStorage(directory)
    recovered = storage.recover().model
    storage.close()
    assert sorted(recovered.feedback.pending) == sorted([*ids[5:], "late"])
    expected = new_model(optimizer, dim=DIM)  # the labelled rows, learned when labelled
    expected.learn(X[:3], [1, 0, 1])
    expected.learn(X[3:5], [0, 1])
    assert_same_state(recovered, expected)
    with client_for(tmp_path / "b") as client:
        create(client, "copy", optimizer=optimizer)
        r = client.post(
            "/v1/models/copy/import", content=file,
            headers={"content-type": "application/x-adaserve-model"},
        )  # fmt: skip
        assert r.status_code in (200, 201), r.text
        r = client.post("/v1/models/copy/feedback", json={"ids": ["late", "i9"], "labels": [1, 1]})
        assert r.status_code == 200, r.text
        r = client.post("/v1/models/copy/feedback", json={"ids": ["i0"], "labels": [1]})
        assert r.status_code == 422


def test_a_model_file_with_bad_feedback_members_is_refused() -> None:
    model = OnlineLogisticRegression(OPTIMIZER, dim=DIM, feedback={"ttl_seconds": 60})
    X = rows(6, 3)
    batch = model.to_batch(X)
    model.feedback.remember(["a", "b", "c"], batch, model.decision_function(batch), 10.0)
    good = model.file_arrays(copy=True)
    assert sorted(OnlineLogisticRegression.from_arrays(good).feedback.pending) == ["a", "b", "c"]
    plain = OnlineLogisticRegression(OPTIMIZER, dim=DIM).file_arrays()

    def broken(**changes: Any) -> dict[str, Any]:
        return {**good, **changes}

    cases = {
        "feedback_ids": broken(feedback_ids=np.array(["a", "a", "c"])),
        "feedback_indices": broken(feedback_indices=np.full_like(good["feedback_indices"], DIM)),
        "feedback_indptr": broken(feedback_indptr=good["feedback_indptr"][::-1].copy()),
        "feedback_times": broken(feedback_times=np.array([10.0, np.nan, 10.0])),
        "feedback_margins": broken(feedback_margins=np.zeros(2)),
        "feedback_counts": broken(feedback_counts=np.array([1.5, 10, 0, 0, 0, 0])),
    }
    for member, arrays in cases.items():
        with pytest.raises(ModelFileError) as caught:
            OnlineLogisticRegression.from_arrays(arrays)
        assert caught.value.member == member, (member, caught.value)
    without = {k: v for k, v in good.items() if k != "feedback_values"}
    with pytest.raises(ModelFileError, match="feedback_values"):
        OnlineLogisticRegression.from_arrays(without)
    with pytest.raises(ModelFileError, match="no feedback"):
        OnlineLogisticRegression.from_arrays(
            {**plain, **{k: v for k, v in good.items() if k.startswith("feedback")}}
        )
    # and through the file reader, as an import reads it
    buffer = io.BytesIO()
    np.savez(buffer, **broken(feedback_ids=np.array(["a", "", "c"])))
    with pytest.raises(ModelFileError, match="feedback_ids"):
        OnlineLogisticRegression.load(io.BytesIO(buffer.getvalue()))


def test_feedback_setting_is_validated(tmp_path) -> None:
    with client_for(tmp_path) as client:
        for setting in (
            {"ttl_seconds": 0}, {"ttl_seconds": -1}, {"ttl_seconds": 1, "on_expiry": "keep"},
            {"ttl_seconds": 1, "extra": 1}, {"on_expiry": "drop"},
        ):  # fmt: skip
            r = client.post("/v1/models", json={"name": "x", "dim": 8, "feedback": setting})
            assert r.status_code == 422, (setting, r.text)
    for setting in ({"ttl_seconds": float("inf")}, {"ttl_seconds": True}, "1"):
        with pytest.raises(Exception, match="feedback"):
            OnlineLogisticRegression(dim=8, feedback=setting)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_concurrent_predictions_feedback_and_updates_equal_the_serial_replay(tmp_path) -> None:
    """Many clients predict with ids, label them and send plain updates to one model: the model
    equals the serial replay, in the order the server acknowledged it, of what it learned."""
    app = create_app(Settings(data_dir=tmp_path, warm_kernels=False, overlap_log_nnz=0))
    n_clients, per_client = 6, 8
    X = rows(7, n_clients * per_client * 2)
    labels = np.random.default_rng(8).integers(0, 2, X.shape[0])

    async def scenario() -> tuple[list[tuple[int, str, list[int]]], bytes]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.post(
                "/v1/models",
                json={"name": "m", "dim": DIM, "optimizer": OPTIMIZER,
                      "feedback": {"ttl_seconds": 3600}},
            )  # fmt: skip
            assert r.status_code == 201
            acknowledged: list[tuple[int, str, list[int]]] = []

            async def one_client(c: int) -> None:
                for j in range(per_client):
                    k = 2 * (c * per_client + j)
                    r = await client.post(
                        "/v1/models/m/predict", json=csr(X[k : k + 1], ids=[f"id{k}"])
                    )
                    assert r.status_code == 200, r.text
                    r = await client.post("/v1/models/m/predict", json=csr(X[k : k + 1]))
                    assert r.status_code == 200, r.text  # a plain prediction remembers nothing
                    r = await client.post(
                        "/v1/models/m/updates",
                        json=csr(X[k + 1 : k + 2], labels=[int(labels[k + 1])]),
                    )
                    assert r.status_code == 200, r.text
                    acknowledged.append((r.json()["step"], "update", [k + 1]))
                    r = await client.post(
                        "/v1/models/m/feedback",
                        json={"ids": [f"id{k}"], "labels": [int(labels[k])]},
                    )
                    assert r.status_code == 200, r.text
                    acknowledged.append((r.json()["step"], "feedback", [k]))

            await asyncio.gather(*(one_client(c) for c in range(n_clients)))
            final = (await client.get("/v1/models/m/export")).content
            return acknowledged, final

    acknowledged, final = run(scenario())
    replay = OnlineLogisticRegression(OPTIMIZER, dim=DIM)
    for step, _, which in sorted(acknowledged):
        assert replay.learn(X[which], labels[which]).step == step
    served = OnlineLogisticRegression.load(io.BytesIO(final))
    assert served.table.tobytes() == replay.table.tobytes()
    assert served.counters.tobytes() == replay.counters.tobytes()
    assert not served.feedback.pending
    recovered = ModelStorage(tmp_path / "models" / "m").recover().model
    assert recovered.table.tobytes() == replay.table.tobytes()
    assert recovered.feedback.served.rows == n_clients * per_client


def test_python_client_metrics_and_dashboard(tmp_path) -> None:
    from service.client import AdaserveClient, AdaserveError

    X = rows(9, 6)
    with client_for(tmp_path) as test_client:
        client = AdaserveClient("http://testserver", transport=test_client._transport)
        client.create_model(
            "m", OPTIMIZER, dim=DIM, feedback={"ttl_seconds": 60, "on_expiry": "drop"}
        )
        served = client.predict("m", X, ids=list("abcdef"))["probabilities"]
        assert served.shape == (6,)
        with pytest.raises(AdaserveError) as caught:
            client.predict("m", X[:1], ids=["a"])
        assert (caught.value.status, caught.value.error) == (409, "duplicate_ids")
        result = client.feedback("m", ["c", "a"], [1, 0], sample_weight=[2.0, 1.0])
        assert (result["rows"], result["step"]) == (2, 2)
        info = client.get_model("m")["feedback"]
        assert (info["pending"], info["labelled"], info["on_expiry"]) == (4, 2, "drop")
        text = test_client.get("/metrics").text
        assert 'adaserve_feedback_pending_rows{model="m"} 4.0' in text
        assert 'adaserve_feedback_rows_total{model="m",outcome="labelled"} 2.0' in text
        assert 'adaserve_feedback_join_rate{model="m"} 1.0' in text
        p = served[[2, 0]]
        expected = -(2 * np.log(p[0]) + np.log1p(-p[1])) / 3
        line = next(x for x in text.splitlines() if x.startswith("adaserve_feedback_served{"))
        assert 'metric="log_loss"' in line
        assert float(line.split()[-1]) == pytest.approx(expected, rel=1e-9)
        assert 'adaserve_feedback_delay_seconds{model="m",quantile="0.50"}' in text
        assert "feedbackCards" in test_client.get("/ui/app.js").text


def test_log_records_carry_the_pending_table_changes_and_are_found_past_damage() -> None:
    from service.storage import encode_batch, record_parts, scan_log

    model = OnlineLogisticRegression(OPTIMIZER, dim=DIM, feedback={"ttl_seconds": 60})
    feedback = model.feedback
    batch = model.to_batch(rows(10, 3))
    remembered = feedback.remember(["a", "é", "c"], batch, np.array([0.1, -2.5, 1e-300]), 5.0)
    labelled = feedback.claim(["é"], [1], [2.5])
    label = feedback.settle("label", ["é"], labelled, 7.25)
    dropped = feedback.drop(["a"], 9.0)
    nothing = OnlineLogisticRegression(OPTIMIZER, dim=DIM).to_batch(rows(11, 0))
    from service.storage import record_body

    records = [
        (batch, 0, remembered), (labelled, 0, label), (nothing, 1, dropped)
    ]  # fmt: skip
    data = b"".join(
        b"".join(bytes(p) for p in record_parts(b, step, record_body(b, e), b"\x01" * 16))
        for b, step, e in records
    )
    scan = scan_log("wal-0.log", data)
    assert scan.problem is None
    assert [r.entry for r in scan.records] == [remembered, label, dropped]
    assert [(r.step_before, r.step_after) for r in scan.records] == [(0, 0), (0, 1), (1, 1)]
    assert scan.records[1].batch.weights.tolist() == [2.5]
    # damage in the first record: the records after it are still found (not a torn tail)
    damaged = bytearray(data)
    damaged[12] ^= 0xFF
    scan = scan_log("wal-0.log", bytes(damaged))
    assert scan.problem is not None and [r.entry for r in scan.after] == [label, dropped]
    # replayed from an empty table: the same table
    again = OnlineLogisticRegression(OPTIMIZER, dim=DIM, feedback={"ttl_seconds": 60})
    for record in scan_log("wal-0.log", data).records:
        if record.learned:
            again.learn_batch(record.batch)
        assert again.feedback.replay(record.entry, record.batch)
        assert not again.feedback.replay(record.entry, record.batch)  # held already: skipped
    assert list(again.feedback.pending) == ["c"] == list(feedback.pending)
    assert again.feedback.summary() == feedback.summary()
    assert encode_batch(batch, 0)  # a record without an entry is as before


def test_a_refused_log_write_leaves_the_pending_rows_as_the_files_hold_them(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the log refuses the write of remembered rows, then of labels; each
    request gets 503, the model is reloaded from its files, nothing of it stays."""
    import errno

    from service.storage import StorageError

    X = rows(12, 3)
    real_append = ModelStorage.append_all
    failing = {"on": False}

    def append_all(storage: ModelStorage, records: list) -> None:
        if failing["on"]:
            raise StorageError(errno.ENOSPC, "no space left on device")
        real_append(storage, records)

    monkeypatch.setattr(ModelStorage, "append_all", append_all)
    with client_for(tmp_path) as client:
        create(client)
        failing["on"] = True
        r = client.post("/v1/models/m/predict", json=csr(X, ids=["a", "b", "c"]))
        assert r.status_code == 503, r.text
        failing["on"] = False
        assert client.get("/v1/models/m").json()["feedback"]["pending"] == 0
        assert client.post("/v1/models/m/predict", json=csr(X, ids=["a", "b", "c"])).is_success
        before = exported(client)
        failing["on"] = True
        r = client.post("/v1/models/m/feedback", json={"ids": ["b"], "labels": [1]})
        assert r.status_code == 503, r.text
        failing["on"] = False
        after = exported(client)
        assert after.table.tobytes() == before.table.tobytes() and after.step == 0
        assert sorted(after.feedback.pending) == ["a", "b", "c"]
        r = client.post("/v1/models/m/feedback", json={"ids": ["b"], "labels": [1]})
        assert r.status_code == 200, r.text


def test_predict_with_ids_and_feedback_need_the_write_role(tmp_path) -> None:
    X = rows(13, 1)
    with client_for(tmp_path, tokens="read:r-token,write:w-token,admin:a-token") as client:
        admin, write, read = ({"Authorization": f"Bearer {t}-token"} for t in "awr")
        r = client.post(
            "/v1/models", headers=admin,
            json={"name": "m", "dim": DIM, "feedback": {"ttl_seconds": 60}},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        assert client.post("/v1/models/m/predict", json=csr(X), headers=read).status_code == 200
        r = client.post("/v1/models/m/predict", json=csr(X, ids=["a"]), headers=read)
        assert r.status_code == 403, r.text
        r = client.post("/v1/models/m/predict", json=csr(X, ids=["a"]), headers=write)
        assert r.status_code == 200, r.text
        labels = {"ids": ["a"], "labels": [1]}
        assert client.post("/v1/models/m/feedback", json=labels, headers=read).status_code == 403
        assert client.post("/v1/models/m/feedback", json=labels, headers=write).status_code == 200
