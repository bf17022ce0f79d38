"""Fixtures shared by the three suites (``unit``, ``service``, ``e2e``).

``client`` is the app in this process (``TestClient``) over ``settings``: a fresh data directory,
kernels compiled on first use. A module that needs other settings overrides ``settings``; one that
needs models made first overrides ``client`` and asks for this one by the same name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, warm_kernels=False)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c
