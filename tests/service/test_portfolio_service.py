"""``"optimizer": "auto"`` through the service: created, learned and predicted like any model;
its leaderboard in the model info; rates read from the leader or a member by name; its file
exported, imported and recovered after a restart; a damaged portfolio file refused (the
command line's ``--optimizer auto``: tests/unit/test_portfolio.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient
from streams import sparse_stream, to_csr

from optim import ModelFileError
from optim.model import save_file_arrays
from optim.portfolio import MEMBERS, PortfolioLogisticRegression, load_model
from service.app import create_app
from service.settings import Settings

DIM = 16


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, warm_kernels=False, max_body_bytes=4 << 20)


def csr_body(X: sp.csr_array, y: np.ndarray) -> dict:
    return {"indptr": X.indptr.tolist(), "indices": X.indices.tolist(),
            "values": X.data.tolist(), "labels": y.tolist()}  # fmt: skip


def stream() -> tuple[sp.csr_array, np.ndarray]:
    rows, labels, _ = sparse_stream(7, dim=DIM, n_rows=400)
    return to_csr(rows, DIM), labels


def test_auto_model_learns_predicts_and_shows_its_leaderboard(client: TestClient) -> None:
    created = client.post("/v1/models", json={"name": "a", "dim": DIM, "optimizer": "auto"})
    assert created.status_code == 201, created.text
    assert created.json()["config"]["optimizer"]["name"] == "auto"
    X, y = stream()
    served = client.post("/v1/models/a/updates?return_predictions=true", json=csr_body(X, y))
    assert served.status_code == 200, served.text
    alone = PortfolioLogisticRegression(dim=DIM)
    expected = alone.learn(X, y)
    np.testing.assert_array_equal(served.json()["probabilities"], expected.probabilities)
    assert served.json()["log_loss"] == expected.log_loss

    info = client.get("/v1/models/a").json()
    portfolio = info["portfolio"]
    assert portfolio["leader"] == alone.leader
    assert [m["name"] for m in portfolio["leaderboard"]] == [m["name"] for m in alone.leaderboard()]
    assert info["step"] == 400 and info["metrics"]["rows"] == 400
    predicted = client.post("/v1/models/a/predict", json=csr_body(X[:5], y[:5])).json()
    np.testing.assert_allclose(predicted["margins"], alone.decision_function(X[:5]), atol=1e-12)

    leader = client.get("/v1/models/a/learning-rates?indices=0,1").json()
    assert leader["member"] == alone.leader
    assert leader["coordinates"][0]["weight"] == alone.inspect_coordinates([0])[0]["weight"]
    member = client.get("/v1/models/a/learning-rates?indices=0&member=ftrl-normalized").json()
    assert member["member"] == "ftrl-normalized"
    assert set(member["coordinates"][0]["state"]) == {"z", "n", "scale"}
    summary = client.get("/v1/models/a/learning-rates/summary?member=vw").json()
    assert summary["member"] == "vw" and summary["touched"] > 0
    by_frequency = client.get("/v1/models/a/learning-rates/by-frequency?member=vw-lr2")
    assert by_frequency.json()["member"] == "vw-lr2"
    unknown = client.get("/v1/models/a/learning-rates?indices=0&member=nope")
    assert unknown.status_code == 422 and unknown.json()["where"]["field"] == "member"


def test_a_model_created_with_no_optimizer_is_auto(client: TestClient) -> None:
    """The service's default optimizer is the portfolio (README: the default)."""
    assert client.post("/v1/models", json={"name": "d", "dim": DIM}).status_code == 201
    info = client.get("/v1/models/d").json()
    assert info["config"]["optimizer"]["name"] == "auto"
    assert [m["name"] for m in info["config"]["optimizer"]["members"]] == [m.name for m in MEMBERS]
    assert info["portfolio"]["leader"] == MEMBERS[0].name


def test_a_plain_model_has_no_members(client: TestClient) -> None:
    body = {"name": "p", "dim": DIM, "optimizer": "adagrad"}
    assert client.post("/v1/models", json=body).status_code == 201
    assert client.get("/v1/models/p").json()["portfolio"] is None
    refused = client.get("/v1/models/p/learning-rates?indices=0&member=adam")
    assert refused.status_code == 422 and refused.json()["where"]["field"] == "member"
    assert client.get("/v1/models/p/learning-rates?indices=0").json()["member"] is None


def test_bad_auto_settings_are_refused(client: TestClient) -> None:
    body = {"name": "b", "dim": DIM, "optimizer": {"name": "auto", "window": 0}}
    response = client.post("/v1/models", json=body)
    assert response.status_code == 422 and response.json()["where"]["field"] == "window"
    body["optimizer"] = {"name": "auto", "members": [{"name": "x", "optimizer": "nope"}]}
    assert client.post("/v1/models", json=body).status_code == 422
    assert "b" not in [m["name"] for m in client.get("/v1/models").json()["models"]]


def test_auto_model_survives_a_restart_and_round_trips_its_file(settings: Settings) -> None:
    X, y = stream()
    members = [{"name": m.name, **m.settings} for m in MEMBERS[:2]]
    optimizer = {"name": "auto", "members": members, "window": 100}
    with TestClient(create_app(settings)) as client:
        client.post("/v1/models", json={"name": "a", "dim": DIM, "optimizer": optimizer})
        client.post("/v1/models/a/updates", json=csr_body(X[:300], y[:300]))
        assert client.post("/v1/models/a/snapshot").status_code == 200
        client.post("/v1/models/a/updates", json=csr_body(X[300:], y[300:]))  # in the log only
        before = client.get("/v1/models/a").json()
        exported = client.get("/v1/models/a/export").content
    with TestClient(create_app(settings)) as client:
        after = client.get("/v1/models/a").json()
        assert after == before
        rows = client.get("/v1/models/a/learning-rates?indices=0,3&member=adagrad-0.1").json()
        imported = client.post(
            "/v1/models/a/import", content=exported,
            headers={"Content-Type": "application/x-adaserve-model"},
        )  # fmt: skip
        assert imported.status_code == 200, imported.text
        assert client.get("/v1/models/a").json() == before
        again = client.get("/v1/models/a/learning-rates?indices=0,3&member=adagrad-0.1").json()
        assert again == rows
    model = load_model(io.BytesIO(exported))
    assert isinstance(model, PortfolioLogisticRegression) and model.step == 400


def assert_refused(arrays: dict, changed: dict, member: str) -> None:
    """A portfolio file of ``arrays`` with ``changed`` is refused, naming ``member``."""
    buffer = io.BytesIO()
    save_file_arrays(buffer, {**arrays, **changed})
    buffer.seek(0)
    with pytest.raises(ModelFileError) as error:
        PortfolioLogisticRegression.load(buffer)
    assert error.value.member == member, error.value


def test_a_damaged_portfolio_file_is_refused() -> None:
    X, y = stream()
    model = PortfolioLogisticRegression(dim=DIM)
    model.learn(X, y)
    arrays = model.file_arrays()

    state = str(arrays["portfolio"])
    bad_leader = np.array(state.replace('"leader": ', '"leader": 9'))
    assert_refused(arrays, {"portfolio": bad_leader}, "portfolio")
    # another member's configuration, then a truncated member file
    assert_refused(arrays, {"member_1": arrays["member_0"]}, "member_1")
    assert_refused(arrays, {"member_2": arrays["member_2"][:-100]}, "member_2")
    assert_refused(arrays, {"metrics_totals": np.array([1.0, np.nan, 0, 0])}, "metrics_totals")
    assert_refused(arrays, {"stray": np.zeros(3)}, "stray")
    reserved = []
    buffer = io.BytesIO(model.to_bytes())
    PortfolioLogisticRegression.load(buffer, reserve=reserved.append)
    assert reserved == [model.memory_bytes]


def test_a_portfolio_file_keeps_its_pending_rows_and_refuses_bad_ones() -> None:
    """feedback with optimizer auto: the pending rows and served metrics are saved with the
    portfolio, counted by ``reserve`` as they will be held, and checked as a single model's."""
    X, y = stream()
    model = PortfolioLogisticRegression(dim=DIM, feedback={"ttl_seconds": 60})
    model.learn(X[:100], y[:100])
    batch = model.to_batch(X[100:110])
    model.feedback.remember(
        [f"r{k}" for k in range(10)], batch, model.decision_function(batch), 5.0
    )
    reserved: list[int] = []
    copy = PortfolioLogisticRegression.load(io.BytesIO(model.to_bytes()), reserve=reserved.append)
    # (as a single model's load: the feedback members' stored bytes, headers and all, an
    # upper bound)
    assert model.memory_bytes <= reserved[0] <= model.memory_bytes + 16_384
    assert copy.feedback is not None and list(copy.feedback.pending) == list(model.feedback.pending)
    assert copy.feedback.summary() == model.feedback.summary()
    assert copy.config == model.config and copy.config["feedback"]["ttl_seconds"] == 60
    arrays = model.file_arrays()
    for changed, member in (
        ({"feedback_indices": np.full_like(arrays["feedback_indices"], DIM)}, "feedback_indices"),
        ({"feedback_times": arrays["feedback_times"][:-1]}, "feedback_times"),
        ({"feedback_counts": np.zeros(3)}, "feedback_counts"),
    ):
        assert_refused(arrays, changed, member)
    plain = PortfolioLogisticRegression(dim=DIM).file_arrays()
    buffer = io.BytesIO()
    save_file_arrays(buffer, {**plain, "feedback_ids": arrays["feedback_ids"]})
    buffer.seek(0)
    with pytest.raises(ModelFileError) as error:  # pending rows without a feedback setting
        PortfolioLogisticRegression.load(buffer)
    assert error.value.member == "feedback_ids"


def test_an_auto_model_over_the_memory_budget_is_refused_saying_why(tmp_path: Path) -> None:
    """The budget counts every member; the refusal says so and what to do instead."""
    settings = Settings(data_dir=tmp_path, warm_kernels=False, memory_budget_bytes=64 << 20)
    with TestClient(create_app(settings)) as client:
        body = {"name": "big", "hash_bits": 20, "optimizer": "auto"}
        response = client.post("/v1/models", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "over_memory_budget"
        detail = response.json()["detail"]
        assert "optimizer auto" in detail and "members side by side" in detail, detail
        needed = PortfolioLogisticRegression(hash_bits=20).memory_bytes
        assert f"{needed:,} bytes" in detail
        body["optimizer"] = "adagrad"  # one model of that size fits
        assert client.post("/v1/models", json=body).status_code == 201
