"""Messages people read: sizes in binary units."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.registry import readable_bytes
from service.settings import Settings


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 bytes"), (1023, "1,023 bytes"), (1024, "1.0 KiB"), (3 << 20, "3.0 MiB"),
     ((1 << 30) - 1, "1,024.0 MiB"), (4 << 30, "4.0 GiB"), (5 << 40, "5.0 TiB"),
     (3 << 50, "3,072.0 TiB")],
)  # fmt: skip
def test_readable_bytes(count: int, text: str) -> None:
    assert readable_bytes(count) == text


def test_memory_budget_refusal_speaks_mib_and_gib(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, warm_kernels=False, memory_budget_bytes=1 << 30)
    with TestClient(create_app(settings)) as client:
        assert (
            client.post(
                "/v1/models", json={"name": "a", "hash_bits": 20, "optimizer": "adagrad"}
            ).status_code
            == 201
        )
        response = client.post(
            "/v1/models", json={"name": "b", "hash_bits": 26, "optimizer": "adagrad"}
        )
    assert response.status_code == 422 and response.json()["error"] == "over_memory_budget"
    detail = response.json()["detail"]
    assert detail.startswith("the model needs 2.0 GiB ("), detail
    assert "MiB of the 1.0 GiB budget (ADASERVE_MEMORY_BUDGET_BYTES) are in use" in detail
    assert detail.endswith("MiB free"), detail
