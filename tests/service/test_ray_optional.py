"""Without a Ray address the service never imports Ray (it is an optional extra)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from fastapi.testclient import TestClient
from service.app import create_app
from service.cli import build_parser
from service.settings import Settings
import tempfile
with tempfile.TemporaryDirectory() as data, TestClient(
    create_app(Settings(data_dir=data, warm_kernels=False))
) as client:
    assert client.post("/v1/models", json={"name": "m", "dim": 8}).status_code == 201
    assert client.get("/v1/cluster").json()["mode"] == "embedded"
build_parser().parse_args(["serve"])
loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith(("ray.", "service.cluster")))
print(loaded)
"""


def test_the_embedded_service_never_imports_ray() -> None:
    # A fresh interpreter: this test process may have imported Ray for other tests.
    run = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout.decode().strip().splitlines()[-1] == "[]"


def test_cluster_of_the_embedded_service_is_this_process(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    with TestClient(create_app(Settings(data_dir=tmp_path, warm_kernels=False))) as client:
        assert client.post("/v1/models", json={"name": "m", "dim": 8}).status_code == 201
        view = client.get("/v1/cluster").json()
    assert view["mode"] == "embedded" and view["models"] == {"m": "ready"}
    [node] = view["nodes"]
    assert node["models"] == ["m"] and node["placed_bytes"] > 0 and node["cpus"] >= 1


def test_the_ray_address_comes_from_the_flag_or_the_environment(monkeypatch) -> None:
    from service.cli import build_parser
    from service.settings import Settings

    args = build_parser().parse_args(["serve", "--ray", "10.0.0.1:6379"])
    assert args.ray_address == "10.0.0.1:6379"
    assert build_parser().parse_args(["serve"]).ray_address is None
    assert Settings().ray_address is None
    monkeypatch.setenv("ADASERVE_RAY_ADDRESS", "auto")
    assert Settings().ray_address == "auto"


def test_a_model_being_recovered_is_a_503_model_recovering() -> None:
    from service.engine.errors import ModelRecovering
    from service.errors import engine_error

    answer = engine_error(ModelRecovering("m"))
    assert (answer.status, answer.code, answer.where) == (503, "model_recovering", {"model": "m"})
    assert "recovered" in answer.detail
