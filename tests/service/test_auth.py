"""The auth matrix: every route x {no token, read, write, admin}; bad token files; loopback."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from optim import OnlineLogisticRegression
from service.app import create_app
from service.auth import parse_tokens, role_of
from service.cli import main
from service.settings import Settings
from service.websafety import is_loopback

TOKENS = {"read": "r-secret", "write": "w-secret", "admin": "a-secret"}
CSR = {"indptr": [0, 1], "indices": [1], "values": [1.0], "labels": [1]}
MODEL_FILE = OnlineLogisticRegression({"name": "adagrad"}, dim=8).to_bytes()

# route -> the least role it needs (None: open to all)
ROUTES = [
    ("GET", "/healthz", None, {}),
    ("GET", "/readyz", None, {}),
    ("GET", "/metrics", "read", {}),
    ("GET", "/v1/optimizers", "read", {}),
    ("GET", "/v1/models", "read", {}),
    ("GET", "/v1/models/m", "read", {}),
    ("POST", "/v1/models/m/predict", "read", {"json": CSR}),
    ("GET", "/v1/models/m/learning-rates?indices=1", "read", {}),
    ("GET", "/v1/models/m/learning-rates/summary", "read", {}),
    ("GET", "/v1/cluster", "read", {}),
    ("POST", "/v1/models/m/updates", "write", {"json": CSR}),
    ("POST", "/v1/models/m/stream", "write",
     {"content": b"1 1:1\n", "headers": {"Content-Type": "text/x-libsvm"}}),
    ("POST", "/v1/models", "admin", {"json": {"name": "other", "dim": 8}}),
    ("GET", "/v1/models/m/export", "admin", {}),
    ("POST", "/v1/models/m/import", "admin",
     {"content": MODEL_FILE, "headers": {"Content-Type": "application/x-adaserve-model"}}),
    ("POST", "/v1/models/m/snapshot", "admin", {}),
    ("GET", "/v1/experiments", "read", {}),
    ("GET", "/v1/experiments/e", "read", {}),
    ("POST", "/v1/experiments/e/updates", "write", {"json": CSR}),
    ("POST", "/v1/experiments/e/stream", "write",
     {"content": b"1 1:1\n", "headers": {"Content-Type": "text/x-libsvm"}}),
    ("POST", "/v1/experiments", "admin",
     {"json": {"name": "f", "dim": 8, "models": [{"optimizer": "sgd"}]}}),
    ("DELETE", "/v1/experiments/e", "admin", {}),
    ("DELETE", "/v1/models/m", "admin", {}),
]  # fmt: skip
RANK = {None: -1, "read": 0, "write": 1, "admin": 2}


@pytest.fixture
def settings(tmp_path) -> Settings:
    tokens = ",".join(f"{role}:{token}" for role, token in TOKENS.items())
    return Settings(data_dir=tmp_path, warm_kernels=False, tokens=tokens)


@pytest.fixture
def client(client: TestClient) -> TestClient:
    """The shared client with a model ``m`` and an experiment ``e`` to call routes on."""
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    assert (
        client.post(
            "/v1/models", json={"name": "m", "dim": 8, "optimizer": "adagrad"}, headers=admin
        ).status_code
        == 201
    )
    experiment = {"name": "e", "dim": 8, "models": [{"optimizer": "adagrad"}]}
    assert client.post("/v1/experiments", json=experiment, headers=admin).status_code == 201
    return client


@pytest.mark.parametrize("caller", [None, "read", "write", "admin", "wrong"])
@pytest.mark.parametrize(
    "method, path, needs, kwargs", ROUTES, ids=[f"{m} {p}" for m, p, *_ in ROUTES]
)
def test_auth_matrix(client: TestClient, caller, method, path, needs, kwargs) -> None:
    headers = dict(kwargs.get("headers", {}))
    if caller == "wrong":
        headers["Authorization"] = "Bearer not-a-token"
    elif caller is not None:
        headers["Authorization"] = f"Bearer {TOKENS[caller]}"
    response = client.request(method, path, **{**kwargs, "headers": headers})
    if needs is None:
        expected = {200}
    elif caller in (None, "wrong"):
        expected = {401}
    elif RANK[caller] < RANK[needs]:
        expected = {403}
    else:
        expected = {200, 201, 204}
    assert response.status_code in expected, (response.status_code, response.text)
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"] == "unauthorized"
    if response.status_code == 403:
        assert needs in response.json()["detail"]


def test_scheme_must_be_bearer(client: TestClient) -> None:
    response = client.get("/v1/models", headers={"Authorization": f"Basic {TOKENS['admin']}"})
    assert response.status_code == 401


def test_tokens_from_env_and_file(tmp_path) -> None:
    file = tmp_path / "tokens"
    file.write_text("# ops\nadmin  file-admin\nread file-read\n")
    tokens = parse_tokens("write:env-write, read:env-read", file)
    assert tokens == {"env-write": "write", "env-read": "read", "file-admin": "admin",
                      "file-read": "read"}  # fmt: skip
    assert role_of(tokens, "file-admin") == "admin" and role_of(tokens, "file-admi") is None
    with pytest.raises(ValueError, match="line 1"):
        file.write_text("root secret\n")
        parse_tokens("", file)
    with pytest.raises(ValueError, match="entry 1"):
        parse_tokens("writer", None)


def test_non_loopback_bind_needs_tokens_or_insecure(tmp_path, caplog) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    code = main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert code == 2 and "refusing to bind 0.0.0.0" in caplog.text


def test_tokens_are_never_logged(tmp_path, caplog) -> None:
    settings = Settings(data_dir=tmp_path, warm_kernels=False, tokens="admin:very-secret-token")
    with TestClient(create_app(settings)) as c:
        c.get("/v1/models", headers={"Authorization": "Bearer very-secret-token"})
        c.get("/v1/models", headers={"Authorization": "Bearer wrong-secret-token"})
    assert "secret-token" not in caplog.text


@pytest.mark.parametrize("path", ["/v1/models/x/predict", "/v1/models/x/updates"])
def test_the_token_is_checked_before_the_model(client: TestClient, path: str) -> None:
    """The per-row routes check auth in plain code (no FastAPI dependency): still 401/403 first."""
    assert client.post(path, json=CSR).status_code == 401
    read = {"Authorization": f"Bearer {TOKENS['read']}"}
    write = {"Authorization": f"Bearer {TOKENS['write']}"}
    assert client.post(path, json=CSR, headers=read).status_code == (
        404 if path.endswith("predict") else 403
    )
    assert client.post(path, json=CSR, headers=write).status_code == 404
    bad_query = client.post(path + "?return_predictions=maybe", json=CSR)
    assert bad_query.status_code == 401  # before the query string is validated
