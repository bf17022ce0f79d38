"""Open mode is safe from web pages, in headless Chromium against the real ``adaserve serve``
(no tokens: the loopback default). A page of another origin (another local port) sends what any
site could: ``no-cors`` fetches with text/plain, form and multipart bodies, and a form submitted
as text/plain. The service answers each with 403 and the model is unchanged. The dashboard's
own page (same origin) still loads and its requests, a POST included, are admitted.

Needs ``/usr/bin/chromium`` and the ``playwright`` package (as tests/e2e/test_ui_browser.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from servers import free_port, start_server, stop_server

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the test is skipped below
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
CSR = '{"indptr": [0, 1], "indices": [1], "values": [1.0], "labels": [1]}'

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium"),
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not installed"),
]

# What any web page may send to the service without a CORS preflight.
ATTACK = """async ({api, csr}) => {
  const post = (path, init) =>
    fetch(api + path, {method: "POST", mode: "no-cors", ...init}).catch((e) => String(e));
  await post("/v1/models/m/updates", {headers: {"Content-Type": "text/plain"}, body: csr});
  await post("/v1/models/m/updates", {body: new URLSearchParams({[csr]: ""})});
  const form = new FormData();
  form.append("batch", csr);
  await post("/v1/models/m/updates", {body: form});
  await post("/v1/models/m/import", {body: new Blob(["PK\\u0003\\u0004"], {type: "text/plain"})});
  await fetch(api + "/v1/models/m", {method: "GET", mode: "no-cors"}).catch((e) => String(e));
}"""


class ForeignSite(BaseHTTPRequestHandler):
    """Any web site: one page holding a form that posts a batch as text/plain."""

    api = ""

    def do_GET(self) -> None:
        page = (
            f'<form id="f" method="post" enctype="text/plain" action="{self.api}'
            f'/v1/models/m/updates"><input name=\'{CSR[:-1]}, "x": "\' value=\'"}}\'></form>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    process = start_server(tmp_path_factory.mktemp("websafety"), port)
    yield f"http://127.0.0.1:{port}"
    stop_server(process)


@pytest.fixture(scope="module")
def foreign_site(server: str) -> Iterator[str]:
    handler = type("Site", (ForeignSite,), {"api": server})
    site = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{site.server_address[1]}"
    site.shutdown()
    site.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def statuses_of(page, server: str) -> list[tuple[str, str, int]]:
    """The (method, path, status) of every answer the page gets from the service."""
    seen: list[tuple[str, str, int]] = []
    page.on(
        "response",
        lambda r: (
            seen.append((r.request.method, r.url[len(server) :], r.status))
            if r.url.startswith(f"{server}/")
            else None
        ),
    )
    return seen


def test_a_foreign_page_changes_nothing(server: str, foreign_site: str, browser) -> None:
    created = httpx.post(f"{server}/v1/models", json={"name": "m", "dim": 8})
    assert created.status_code == 201, created.text
    context = browser.new_context()
    page = context.new_page()
    seen = statuses_of(page, server)
    page.goto(foreign_site)
    page.evaluate(ATTACK, {"api": server, "csr": CSR})
    with page.expect_navigation():
        page.eval_on_selector("#f", "form => form.submit()")
    context.close()
    # every request reached the service, and was refused
    assert [method for method, _, _ in seen] == ["POST"] * 4 + ["GET", "POST"], seen
    assert {status for _, _, status in seen} == {403}, seen
    assert httpx.get(f"{server}/v1/models/m").json()["step"] == 0


def test_the_dashboard_and_its_own_requests_are_admitted(server: str, browser) -> None:
    httpx.post(f"{server}/v1/models", json={"name": "own", "dim": 8})
    context = browser.new_context()
    page = context.new_page()
    seen = statuses_of(page, server)
    page.goto(f"{server}/ui/")
    page.wait_for_load_state("networkidle")
    posted = page.evaluate(
        """async (csr) => (await fetch("../v1/models/own/updates", {method: "POST",
             headers: {"Content-Type": "application/json"}, body: csr})).status""",
        CSR,
    )
    context.close()
    assert posted == 200
    assert any(path.startswith("/v1/") and method == "GET" for method, path, _ in seen), seen
    assert all(status < 400 for _, _, status in seen), seen
    assert httpx.get(f"{server}/v1/models/own").json()["step"] == 1
