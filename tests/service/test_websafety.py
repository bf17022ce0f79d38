"""Open mode is safe from web pages (service/websafety.py): a page in the user's browser can send
a "simple" request (text/plain, form or multipart body; no CORS preflight) to the loopback
service, so every route that takes a body refuses those media types (415), and a request from a
foreign ``Origin`` is refused (403) unless allowed. Neither changes anything."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from optim import OnlineLogisticRegression
from service.app import create_app
from service.cli import main
from service.settings import Settings
from service.websafety import normalized_origin, parse_origins

CSR = {"indptr": [0, 1], "indices": [1], "values": [1.0], "labels": [1]}
MODEL_FILE = "application/x-adaserve-model"
# What a web page may send without a preflight (and a body with no type at all).
SIMPLE_TYPES = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    None,
]
JSON_BODIES = {
    "/v1/models": {"name": "other", "dim": 8},
    "/v1/models/m/updates": CSR,
    "/v1/models/m/predict": CSR,
    "/v1/experiments": {"name": "f", "dim": 8, "models": [{"optimizer": "sgd"}]},
    "/v1/experiments/e/updates": CSR,
    "/v1/models/m/watches": {"index": 1},
}
STREAMS = ["/v1/models/m/stream", "/v1/experiments/e/stream"]
SERVICE = "http://127.0.0.1:8080"  # where the tests' client sends its requests (Host)


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path, warm_kernels=False, allowed_origins="https://dash.example:8443"
    )
    with TestClient(create_app(settings), base_url=SERVICE) as c:
        assert c.post("/v1/models", json={"name": "m", "dim": 8}).status_code == 201
        experiment = {"name": "e", "dim": 8, "models": [{"optimizer": "adagrad"}]}
        assert c.post("/v1/experiments", json=experiment).status_code == 201
        yield c


def state(client: TestClient) -> tuple:
    """Everything a refused request must leave as it was."""
    models = client.get("/v1/models").json()["models"]
    return tuple((m["name"], m["step"]) for m in models), client.get("/v1/models/m/export").content


def headers_of(content_type: str | None) -> dict[str, str]:
    return {} if content_type is None else {"Content-Type": content_type}


def assert_unsupported(response) -> None:
    assert response.status_code == 415, response.text
    body = response.json()
    assert body["error"] == "unsupported_media_type"
    assert body["where"] == {"field": "Content-Type"}


@pytest.mark.parametrize("content_type", SIMPLE_TYPES)
def test_every_route_with_a_body_refuses_what_a_page_may_send(client, content_type) -> None:
    before = state(client)
    documented = client.get("/openapi.json").json()["paths"]
    with_body = [
        path.replace("{name}", "e" if path.startswith("/v1/experiments") else "m")
        for path, operations in documented.items()
        for method, operation in operations.items()
        if method == "post" and "requestBody" in operation
    ]
    # /feedback takes JSON and NDJSON (labels for rows predicted with ids: test_feedback.py)
    assert set(with_body) == {
        *JSON_BODIES,
        *STREAMS,
        "/v1/models/m/import",
        "/v1/models/m/feedback",
    }
    model_file = OnlineLogisticRegression({"name": "adagrad"}, dim=8).to_bytes()
    for path in with_body:
        content = model_file if path.endswith("/import") else orjson.dumps(JSON_BODIES.get(path))
        if path in STREAMS:
            content = b"1 1:1\n"
        assert_unsupported(client.post(path, content=content, headers=headers_of(content_type)))
    assert state(client) == before


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON",
                     "application/merge-patch+json"],
)  # fmt: skip
def test_json_routes_take_json_media_types(client, content_type) -> None:
    for path, body in JSON_BODIES.items():
        response = client.post(path, content=orjson.dumps(body), headers=headers_of(content_type))
        assert response.status_code in (200, 201), (path, response.text)
        if path == "/v1/models":
            client.delete("/v1/models/other")
        if path == "/v1/experiments":
            client.delete("/v1/experiments/f")


@pytest.mark.parametrize(
    "content_type", ["application/octet-stream", "application/zip", "application/json"]
)
def test_import_takes_only_the_model_files_media_type(client, content_type) -> None:
    client.post("/v1/models/m/updates", json=CSR)
    exported = client.get("/v1/models/m/export")
    assert exported.headers["content-type"] == MODEL_FILE
    client.post("/v1/models/m/updates", json=CSR)
    before = state(client)
    refused = client.post(
        "/v1/models/m/import", content=exported.content, headers=headers_of(content_type)
    )
    assert_unsupported(refused)
    assert MODEL_FILE in refused.json()["detail"]
    assert state(client) == before
    imported = client.post(
        "/v1/models/m/import", content=exported.content, headers={"Content-Type": MODEL_FILE}
    )
    assert imported.status_code == 200 and imported.json()["step"] == 1


@pytest.mark.parametrize("path", STREAMS)
def test_streams_take_their_text_formats(client, path) -> None:
    response = client.post(path, content=b"1 1:1\n", headers={"Content-Type": "text/x-libsvm"})
    assert response.status_code == 200
    assert orjson.loads(response.text.splitlines()[-1])["rows"] == 1
    assert_unsupported(client.post(path, content=b"1 1:1\n", headers={"Content-Type": "text/csv"}))


FOREIGN = ["https://evil.example", "http://127.0.0.1:8081", "http://localhost:8080", "null"]
OWN = [SERVICE, "HTTP://127.0.0.1:8080/"]
ALLOWED = ["https://dash.example:8443", "https://DASH.example:8443/"]


@pytest.mark.parametrize("origin", FOREIGN)
def test_a_foreign_origin_is_refused_whatever_the_method(client, origin) -> None:
    before = state(client)
    for method, path, kwargs in [
        ("POST", "/v1/models/m/updates", {"json": CSR}),
        ("POST", "/v1/models", {"json": {"name": "other", "dim": 8}}),
        ("DELETE", "/v1/models/m", {}),
        ("POST", "/v1/models/m/snapshot", {}),
        ("GET", "/v1/models", {}),
        ("GET", "/v1/models/m/export", {}),
    ]:
        response = client.request(method, path, headers={"Origin": origin}, **kwargs)
        assert response.status_code == 403, (method, path, response.text)
        body = response.json()
        assert body["error"] == "forbidden_origin" and body["where"] == {"field": "Origin"}
        assert origin in body["detail"] and "ADASERVE_ALLOWED_ORIGINS" in body["detail"]
    assert state(client) == before
    metrics = client.get("/metrics").text
    assert 'method="POST",route="unmatched",status="403"' in metrics  # counted


@pytest.mark.parametrize("origin", OWN + ALLOWED)
def test_the_own_and_allowed_origins_are_admitted(client, origin) -> None:
    response = client.post("/v1/models/m/updates", json=CSR, headers={"Origin": origin})
    assert response.status_code == 200, response.text
    assert client.get("/v1/models", headers={"Origin": origin}).status_code == 200


def test_the_own_origin_follows_the_host_asked_for(tmp_path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, warm_kernels=False))) as c:
        for host, origin, status in [
            ("[::1]:8080", "http://[::1]:8080", 200),
            ("[::1]:8080", "http://[::1]", 403),
            ("localhost", "http://localhost:80", 200),  # the default port
            ("localhost:8443", "http://localhost:8443", 200),
        ]:
            response = c.get("/v1/models", headers={"Host": host, "Origin": origin})
            assert response.status_code == status, (host, origin, response.text)


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example:8080"},
                                     {"Sec-Fetch-Site": "same-origin"}])  # fmt: skip
def test_open_mode_answers_browsers_only_at_a_loopback_host(tmp_path, headers) -> None:
    """DNS rebinding: evil.example re-pointed at 127.0.0.1, its page is same-origin with the
    service as far as the browser knows. Open on a loopback address, the service answers a
    browser's request only when it asked for a loopback host (or an allowed origin's)."""
    rebound = {"Host": "evil.example:8080", **headers}
    settings = Settings(data_dir=tmp_path, warm_kernels=False)
    with TestClient(create_app(settings)) as c:
        refused = c.post("/v1/models", json={"name": "m", "dim": 8}, headers=rebound)
        assert refused.status_code == 403, refused.text
        assert "not a loopback address" in refused.json()["detail"]
        assert c.get("/v1/models", headers=rebound).status_code == 403
        assert c.get("/v1/models", headers={"Host": "evil.example:8080"}).status_code == 200  # curl
        assert c.get("/v1/models").json() == {"models": []}
    allowed = settings.model_copy(update={"allowed_origins": "http://evil.example:8080"})
    with TestClient(create_app(allowed)) as c:
        assert c.get("/v1/models", headers=rebound).status_code == 200
    with_tokens = settings.model_copy(update={"tokens": "read:secret"})
    with TestClient(create_app(with_tokens)) as c:  # a page cannot know the token
        authorized = {**rebound, "Authorization": "Bearer secret"}
        assert c.get("/v1/models", headers=authorized).status_code == 200


def test_origins_are_compared_normalized() -> None:
    assert normalized_origin("HTTPS://Example.com:443/") == "https://example.com"
    assert normalized_origin("http://example.com:443") == "http://example.com:443"
    assert normalized_origin("http://[::1]:80") == "http://[::1]"
    assert parse_origins(" https://a.example , http://b.example:8080,") == {
        "https://a.example",
        "http://b.example:8080",
    }
    for bad in ["a.example", "https://a.example/path", "://a.example"]:
        with pytest.raises(ValueError, match="ADASERVE_ALLOWED_ORIGINS entry 1"):
            parse_origins(bad)


def test_serve_refuses_a_malformed_allowed_origin(tmp_path, caplog) -> None:
    args = ["serve", "--data-dir", str(tmp_path), "--allowed-origins", "dash.example"]
    assert main(args) == 2
    assert "is not scheme://host[:port]" in caplog.text


@pytest.mark.parametrize(
    "site, mode, admitted",
    [
        ("cross-site", "no-cors", False),  # an <img>, a <script>, a no-cors fetch elsewhere
        ("same-site", "no-cors", False),  # a page on another port of this host
        ("cross-site", "navigate", True),  # a link to the service, followed
        ("same-origin", "cors", True),  # the dashboard
        ("none", "navigate", True),  # typed in the address bar
    ],
)
def test_a_get_without_origin_is_judged_by_fetch_metadata(client, site, mode, admitted) -> None:
    headers = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode}
    response = client.get("/v1/models/m", headers=headers)
    assert response.status_code == (200 if admitted else 403), response.text
    if not admitted:
        assert response.json()["error"] == "forbidden_origin"
        assert f"Sec-Fetch-Site: {site}" in response.json()["detail"]
