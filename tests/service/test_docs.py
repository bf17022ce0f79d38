"""The API docs without the internet: local Swagger UI and ReDoc files, the bearer scheme in the
OpenAPI document (agreeing with the auth matrix), and /metrics labels for the docs' routes."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from test_auth import ROUTES

from service.app import DOCS_FILES


def asset_urls(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_doc_pages_load_every_file_from_the_server(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    urls = asset_urls(page.text)
    assert urls and all(url.startswith(f"{DOCS_FILES}/") for url in urls), urls
    assert "fonts.googleapis" not in page.text
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200 and len(response.content) > 1000, url
    scripts = [url for url in urls if url.endswith(".js")]
    assert scripts and all(len(client.get(url).content) > 500_000 for url in scripts)


def test_redoc_page_keeps_images_from_other_hosts_out(client: TestClient) -> None:
    policy = client.get("/redoc").headers["content-security-policy"]
    assert "img-src 'self' data:" in policy


def operation_security(schema: dict, method: str, path: str) -> list:
    """The security requirement in force for a concrete request path (query ignored)."""
    path = path.split("?")[0]
    for template, operations in schema["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            operation = operations[method.lower()]
            return operation.get("security", schema["security"])
    raise AssertionError(f"{method} {path} is not documented")


def test_openapi_declares_the_bearer_scheme_where_the_routes_need_a_token(
    client: TestClient,
) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearer"]["description"],
    }  # fmt: skip
    for method, path, role, _ in ROUTES:
        expected = [] if role is None else [{"bearer": []}]
        assert operation_security(schema, method, path) == expected, (method, path)


def test_metrics_label_the_docs_routes(client: TestClient) -> None:
    for path in ("/docs", "/openapi.json", "/redoc", f"{DOCS_FILES}/swagger-ui.css", "/ui/"):
        assert client.get(path).status_code == 200, path
    client.get("/no-such-route")
    text = client.get("/metrics").text
    for template in ("/docs", "/openapi.json", "/redoc", f"{DOCS_FILES}/{{path}}", "/ui/"):
        assert f'route="{template}",status="200"' in text, template
    assert 'route="unmatched",status="404"' in text
