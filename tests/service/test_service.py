"""Every endpoint and error path of the REST service, through an in-process client."""

from __future__ import annotations

import io
import re

import numpy as np
import orjson
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter, Histogram

from optim import OnlineLogisticRegression
from service.app import create_app
from service.metrics import ServiceMetrics
from service.routers import learning as learning_module
from service.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, warm_kernels=False, max_rows_per_batch=1_000,
                    max_nnz_per_row=50, max_body_bytes=1 << 20, memory_budget_bytes=50 << 20,
                    max_models=5)  # fmt: skip


def create(client: TestClient, name: str = "m", **config) -> dict:
    body = {"name": name, "dim": 64, "optimizer": {"name": "adagrad", "lr": 0.5}, **config}
    response = client.post("/v1/models", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def assert_error(response, status: int, code: str | None, **where) -> dict:
    """The response is the documented error body; ``code=None`` accepts any code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "where"} and body["detail"]
    assert code is None or body["error"] == code
    for key, value in where.items():
        assert body["where"].get(key) == value, body
    return body


JSON = {"Content-Type": "application/json"}
MODEL_FILE = {"Content-Type": "application/x-adaserve-model"}
CSR = {"indptr": [0, 2, 3], "indices": [1, 5, 5], "values": [1.0, 2.0, -1.0], "labels": [1, 0]}


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_create_fills_defaults_and_lists(client: TestClient) -> None:
    info = create(client, "clicks", optimizer="adam", hash_bits=8, dim=None)
    assert info["config"]["optimizer"] == {
        "name": "adam", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "l2": 0.0,
    }  # fmt: skip
    assert info["config"]["dim"] == 256 and info["step"] == 0
    assert [m["name"] for m in client.get("/v1/models").json()["models"]] == ["clicks"]
    assert client.get("/v1/models/clicks").json()["state_bytes"] == info["state_bytes"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "bad name!", "dim": 4}, "name"),
        ({"name": "x", "dim": 4, "optimizer": "adamw"}, "optimizer.name"),
        ({"name": "x", "dim": 4, "optimizer": {"name": "adam", "lr": -1}}, "optimizer.lr"),
        ({"name": "x", "dim": 4, "optimizer": {"name": "adam", "rho": 1}}, "optimizer.rho"),
        ({"name": "x", "dim": 0}, "dim"),
        ({"name": "x"}, "dim"),
        ({"name": "x", "dim": 4, "lazy": "never"}, "lazy"),
        ({"name": "x", "dim": 10**12}, "dim"),
        ({"name": "x", "dim": 4, "colour": "red"}, "colour"),
        ({"name": "x", "dim": 4, "read_replicas": -1}, "read_replicas"),
        ({"name": "x", "dim": 4, "read_replicas": 1}, "read_replicas"),  # one process: no copies
    ],
)
def test_create_rejects(client: TestClient, body: dict, field: str) -> None:
    assert_error(client.post("/v1/models", json=body), 422, None, field=field)
    assert client.get("/v1/models").json()["models"] == []


def test_create_conflict_and_limits(client: TestClient) -> None:
    create(client, "a")
    assert_error(client.post("/v1/models", json={"name": "a", "dim": 4}), 409, "model_exists")
    for name in "bcde":
        create(client, name)
    assert_error(client.post("/v1/models", json={"name": "f", "dim": 4}), 422, "too_many_models")


def test_update_csr_and_named_rows(client: TestClient) -> None:
    create(client)
    response = client.post("/v1/models/m/updates?return_predictions=true", json=CSR)
    body = response.json()
    assert body["rows"] == 2 and body["step"] == 2 and body["probabilities"][0] == 0.5
    rows = {"rows": [{"features": {"IQ": 1.2, "city": "paris"}, "label": True, "weight": 2.0}]}
    assert client.post("/v1/models/m/updates", json=rows).json()["step"] == 3
    info = client.get("/v1/models/m").json()
    assert info["metrics"]["rows"] == 3 and info["touched_coordinates"] >= 3


def test_update_matches_in_process_model(client: TestClient) -> None:
    create(client)
    X = sp.random(200, 64, density=0.1, format="csr", random_state=3)
    y = np.random.default_rng(3).integers(0, 2, 200)
    body = {"indptr": X.indptr.tolist(), "indices": X.indices.tolist(),
            "values": X.data.tolist(), "labels": y.tolist()}  # fmt: skip
    served = client.post("/v1/models/m/updates?return_predictions=true", json=body).json()
    local = OnlineLogisticRegression({"name": "adagrad", "lr": 0.5}, dim=64).learn(X, y)
    np.testing.assert_array_equal(served["probabilities"], local.probabilities)
    assert served["log_loss"] == local.log_loss


BAD_UPDATES = [
    ({"indptr": [1, 2], "indices": [1], "values": [1.0], "labels": [1]}, "indptr", None),
    ({"indptr": [0, 1], "indices": [64], "values": [1.0], "labels": [1]}, "indices", 0),
    ({"indptr": [0, 1], "indices": [1], "values": ["x"], "labels": [1]}, "values", 0),
    ({"indptr": [0, 1], "indices": [1], "values": [1.0], "labels": [2]}, "labels", 0),
    ({"indptr": [0, 1], "indices": [1], "values": [1.0]}, "labels", None),
    ({"indptr": [0, 1], "indices": [1], "values": [1.0], "labels": [1], "weights": [-1]},
     "weights", 0),
    ({"rows": [{"features": {"a": 1}, "label": 1}, {"features": {"a": None}, "label": 1}]},
     "features.a", 1),
    ({"rows": [{"features": {"a": 1}}]}, "label", 0),
    ({"rows": [{"features": {"a": 1}, "label": 1, "extra": 1}]}, "rows", 0),
    ({"something": 1}, "body", None),
    ([1, 2], "body", None),
]  # fmt: skip


@pytest.mark.parametrize("body, field, row", BAD_UPDATES)
def test_bad_updates_are_422_and_change_nothing(client: TestClient, body, field, row) -> None:
    create(client)
    client.post("/v1/models/m/updates", json=CSR)
    before = client.get("/v1/models/m/export").content
    error = assert_error(client.post("/v1/models/m/updates", json=body), 422, "invalid_input")
    assert error["where"].get("field") == field and error["where"].get("row") == row
    assert client.get("/v1/models/m/export").content == before


def test_a_large_bad_update_is_refused_by_its_parser_thread_and_changes_nothing(
    client: TestClient,
) -> None:
    """Bodies over INLINE_BODY_BYTES are parsed in a parser thread that hands the batch to the
    model's writer itself: an error there is the same 4xx, and nothing is learned or logged."""
    create(client)
    rows = 1_000
    row = [1, 7, 11, 20, 33]
    good = {"indptr": [5 * r for r in range(rows + 1)], "indices": row * rows,
            "values": [0.123456789] * (5 * rows),
            "labels": [r % 2 for r in range(rows)]}  # fmt: skip
    assert len(orjson.dumps(good)) > learning_module.INLINE_BODY_BYTES
    assert client.post("/v1/models/m/updates", json=good).json()["step"] == rows
    before = client.get("/v1/models/m/export").content
    bad = {**good, "labels": [*good["labels"][:-1], 3]}
    error = assert_error(client.post("/v1/models/m/updates", json=bad), 422, "invalid_input")
    assert error["where"] == {"row": rows - 1, "field": "labels"}
    too_many = {"indptr": [5 * r for r in range(1_002)], "indices": row * 1_001,
                "values": [0.123456789] * 5_005, "labels": [1] * 1_001}  # fmt: skip
    assert_error(client.post("/v1/models/m/updates", json=too_many), 413, "batch_too_large")
    assert client.get("/v1/models/m/export").content == before
    assert client.post("/v1/models/m/updates", json=good).json()["step"] == 2 * rows


def test_invalid_json_and_limits(client: TestClient) -> None:
    create(client)
    assert_error(
        client.post("/v1/models/m/updates", content=b"{nope", headers=JSON), 422, "invalid_json"
    )
    big = {"indptr": list(range(1_002)), "indices": [1] * 1_001, "values": [1.0] * 1_001,
           "labels": [1] * 1_001}  # fmt: skip
    assert_error(client.post("/v1/models/m/updates", json=big), 413, "batch_too_large")
    wide = {"indptr": [0, 60], "indices": list(range(60)), "values": [1.0] * 60, "labels": [1]}
    assert_error(client.post("/v1/models/m/updates", json=wide), 413, "row_too_large", row=0)
    huge = b'{"rows": [' + b" " * (2 << 20) + b"]}"
    assert_error(
        client.post("/v1/models/m/updates", content=huge, headers=JSON), 413, "payload_too_large"
    )
    assert client.get("/v1/models/m").json()["step"] == 0


def test_unknown_model_is_404_everywhere(client: TestClient) -> None:
    # (an import into a name no model has creates the model: test_import_new.py)
    for method, path in [
        ("GET", "/v1/models/x"), ("DELETE", "/v1/models/x"), ("POST", "/v1/models/x/updates"),
        ("POST", "/v1/models/x/predict"), ("GET", "/v1/models/x/learning-rates"),
        ("GET", "/v1/models/x/learning-rates/summary"), ("GET", "/v1/models/x/export"),
        ("POST", "/v1/models/x/snapshot"), ("GET", "/v1/models/x/watches"),
    ]:  # fmt: skip
        response = client.request(method, path, content=orjson.dumps(CSR), headers=JSON)
        assert_error(response, 404, "model_not_found", model="x")


def test_predict_never_changes_the_model(client: TestClient) -> None:
    create(client)
    client.post("/v1/models/m/updates", json=CSR)
    before = client.get("/v1/models/m/export").content
    out = client.post(
        "/v1/models/m/predict", json={k: CSR[k] for k in ("indptr", "indices", "values")}
    )
    body = out.json()
    assert len(body["probabilities"]) == 2
    assert body["probabilities"][0] == pytest.approx(1 / (1 + np.exp(-body["margins"][0])))
    named = client.post("/v1/models/m/predict", json={"rows": [{"features": {"IQ": 1}}]})
    assert named.status_code == 200
    assert client.get("/v1/models/m/export").content == before


def test_learning_rates_by_index_and_name(client: TestClient) -> None:
    create(client, hash_bits=12, dim=None)
    rows = [{"features": {"IQ": 1.1, "CGPA": 0.8}, "label": 1}] + [
        {"features": {"CGPA": 0.5 + i / 100}, "label": i % 2} for i in range(30)
    ]
    client.post("/v1/models/m/updates", json={"rows": rows})
    out = client.get("/v1/models/m/learning-rates?features=IQ,CGPA&indices=0").json()
    zero, iq, cgpa = out["coordinates"]
    assert zero["index"] == 0 and iq["feature"] == "IQ" and cgpa["feature"] == "CGPA"
    assert iq["times_touched"] == 1 and cgpa["times_touched"] == 31
    assert iq["effective_learning_rate"] > cgpa["effective_learning_rate"]
    assert set(iq["state"]) == {"sum"} and out["intercept"]["times_touched"] == 31
    summary = client.get("/v1/models/m/learning-rates/summary?top=1&min_touches=1").json()
    assert (
        summary["touched"] == 2 and summary["top_by_effective_learning_rate"][0]["feature"] == "IQ"
    )
    assert_error(client.get("/v1/models/m/learning-rates?indices=a"), 422, "invalid_input",
                 field="indices")  # fmt: skip
    assert_error(client.get("/v1/models/m/learning-rates?indices=99999"), 422, "invalid_input")
    assert_error(client.get("/v1/models/m/learning-rates/summary?top=-1"), 422, "invalid_input")


def test_export_import_snapshot_round_trip(client: TestClient, settings: Settings) -> None:
    create(client)
    client.post("/v1/models/m/updates", json=CSR)
    exported = client.get("/v1/models/m/export")
    assert exported.headers["content-type"] == "application/x-adaserve-model"
    model = OnlineLogisticRegression.load(io.BytesIO(exported.content))
    assert model.step == 2
    client.post("/v1/models/m/updates", json=CSR)
    imported = client.post("/v1/models/m/import", content=exported.content, headers=MODEL_FILE)
    assert imported.json()["step"] == 2
    assert client.get("/v1/models/m").json()["step"] == 2
    snap = client.post("/v1/models/m/snapshot").json()
    snapshot_file = settings.data_dir / "models" / "m" / "snapshot-2.npz"
    assert snap["step"] == 2 and snapshot_file.stat().st_size == snap["bytes"]


def test_import_validates_before_replacing(client: TestClient) -> None:
    create(client)
    client.post("/v1/models/m/updates", json=CSR)
    before = client.get("/v1/models/m/export").content
    refused = client.post("/v1/models/m/import", content=b"not a model", headers=MODEL_FILE)
    assert_error(refused, 422, "invalid_input")
    other = OnlineLogisticRegression("adam", dim=64).to_bytes()
    mismatched = client.post("/v1/models/m/import", content=other, headers=MODEL_FILE)
    assert_error(mismatched, 422, "config_mismatch", field="optimizer")
    assert client.get("/v1/models/m/export").content == before


def test_models_survive_a_restart(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        create(client)
        client.post("/v1/models/m/updates", json=CSR)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/models/m").json()["step"] == 2
        assert client.delete("/v1/models/m").status_code == 204
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/models").json()["models"] == []


def test_prometheus_metrics(client: TestClient) -> None:
    create(client)
    client.post("/v1/models/m/updates", json=CSR)
    text = client.get("/metrics").text
    assert 'adaserve_rows_learned_total{model="m"} 2.0' in text
    assert (
        'adaserve_requests_total{method="POST",route="/v1/models/{name}/updates",status="200"}'
        in text
    )
    # The log-loss gauges are read from the model when scraped: they match what it reports.
    metrics = client.get("/v1/models/m").json()["metrics"]
    gauges = dict(
        re.findall(r'^(adaserve_\w*progressive_log_loss)\{model="m"\} (\S+)$', text, re.M)
    )
    assert float(gauges["adaserve_progressive_log_loss"]) == pytest.approx(
        metrics["overall"]["log_loss"], rel=1e-12
    )
    assert float(gauges["adaserve_recent_progressive_log_loss"]) == pytest.approx(
        metrics["recent"]["log_loss"], rel=1e-12
    )
    assert client.delete("/v1/models/m").status_code == 204
    assert 'model="m"' not in client.get("/metrics").text


def test_openapi_documents_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    documented = {
        "/v1/models", "/v1/models/{name}/updates", "/v1/models/{name}/predict",
        "/v1/models/{name}/learning-rates", "/metrics", "/readyz",
    }  # fmt: skip
    assert documented <= set(spec["paths"])
    update = spec["paths"]["/v1/models/{name}/updates"]["post"]
    assert "oneOf" in update["requestBody"]["content"]["application/json"]["schema"]
    assert {"CsrBatch", "NamedRows", "ErrorBody"} <= set(spec["components"]["schemas"])


def test_request_metrics_count_each_route_method_and_status(client: TestClient) -> None:
    create(client)
    probe = {k: CSR[k] for k in ("indptr", "indices", "values")}
    for _ in range(3):
        assert client.post("/v1/models/m/predict", json=probe).status_code == 200
    assert client.post("/v1/models/x/predict", json=probe).status_code == 404
    assert client.post("/v1/models/m/predict", content=b"{", headers=JSON).status_code == 422
    text = client.get("/metrics").text
    route = 'method="POST",route="/v1/models/{name}/predict"'
    for status, count in (("200", 3), ("404", 1), ("422", 1)):
        assert f'adaserve_requests_total{{{route},status="{status}"}} {count}.0' in text
    assert f"adaserve_request_seconds_count{{{route}}} 5.0" in text


def test_request_metrics_expose_what_prometheus_client_families_would() -> None:
    """The plain counts behind the request metrics, against prometheus-client's own Counter and
    Histogram fed the same requests: the same samples (sums up to rounding of their order)."""
    metrics = ServiceMetrics()
    reference = CollectorRegistry()
    counter = Counter("adaserve_requests", "HTTP requests", ["route", "method", "status"],
                      registry=reference)  # fmt: skip
    histogram = Histogram("adaserve_request_seconds", "HTTP request latency", ["route", "method"],
                          registry=reference)  # fmt: skip
    rng = np.random.default_rng(5)
    bounds = list(Histogram.DEFAULT_BUCKETS[:-1])
    for _ in range(2_000):
        route, method = ("/a", "GET") if rng.random() < 0.3 else ("/b/{name}", "POST")
        status = int(rng.choice([200, 404, 422]))
        # bounds themselves (le is inclusive), just over them, and anything in between
        seconds = float(
            rng.choice([*bounds, np.nextafter(rng.choice(bounds), 99), rng.exponential(2)])
        )
        metrics.request_done(route, method, status, seconds)
        counter.labels(route, method, str(status)).inc()
        histogram.labels(route, method).observe(seconds)

    def samples(registry: CollectorRegistry) -> dict[tuple, float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect()
            if family.name.startswith("adaserve_request")
            for s in family.samples
            if not s.name.endswith("_created")
        }

    ours, theirs = samples(metrics.registry), samples(reference)
    assert ours.keys() == theirs.keys()
    assert len(ours) == 6 + 2 * (len(Histogram.DEFAULT_BUCKETS) + 2)  # counts; buckets, count, sum
    for key, value in theirs.items():
        assert ours[key] == (pytest.approx(value, rel=1e-12) if key[0].endswith("_sum") else value)


def test_hot_routes_answer_exactly_what_their_response_model_serializes(
    client: TestClient,
) -> None:
    """predict and updates encode their answers with orjson: byte for byte pydantic's."""
    from pydantic import TypeAdapter

    from service.schemas import Predictions, UpdateResult

    create(client)
    for path, body, model in (
        ("/v1/models/m/updates", CSR, UpdateResult),
        ("/v1/models/m/updates?return_predictions=true", CSR, UpdateResult),
        ("/v1/models/m/updates", {"indptr": [0], "indices": [], "values": [], "labels": []},
         UpdateResult),
        ("/v1/models/m/predict", {k: CSR[k] for k in ("indptr", "indices", "values")},
         Predictions),
        ("/v1/models/m/predict", {"rows": [{"features": {"IQ": 1e-7}}, {"features": {}}]},
         Predictions),
    ):  # fmt: skip
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        adapter = TypeAdapter(model)
        assert response.content == adapter.dump_json(adapter.validate_json(response.content))


def test_openapi_keeps_the_documented_order_and_the_name_of_predict(client: TestClient) -> None:
    """The learning routes are matched first but documented in place; predict reads ``name``
    from the path itself and documents it as a declared parameter would be."""
    spec = client.get("/openapi.json").json()
    paths = list(spec["paths"])
    assert paths[:2] == ["/healthz", "/readyz"]
    assert paths.index("/v1/models") < paths.index("/v1/models/{name}/updates")
    assert paths[-1] == "/metrics"
    predict = spec["paths"]["/v1/models/{name}/predict"]["post"]
    update = spec["paths"]["/v1/models/{name}/updates"]["post"]
    assert predict["parameters"] == [
        p for p in update["parameters"] if p["name"] == "name"
    ] == [{"name": "name", "in": "path", "required": True,
           "schema": {"type": "string", "title": "Name"}}]  # fmt: skip
    assert "oneOf" in predict["requestBody"]["content"]["application/json"]["schema"]
