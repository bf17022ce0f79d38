"""The dashboard at ``/ui`` in headless Chromium, against the real ``adaserve serve`` process with
tokens on: the token prompt, a stream followed live, the loss curve, the histograms, the top
features, a lookup that agrees with the API to the last bit, and (when the experiments API is
there) an experiment's curves and leaderboard. No console errors.

Needs ``/usr/bin/chromium`` (Debian's ``chromium`` package) and the ``playwright`` Python package;
it installs and downloads nothing itself (``.ci/run`` installs both).
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from datasets import shared_file
from servers import free_port, start_server, stop_server

try:
    from playwright.sync_api import Page, expect, sync_playwright

    # Playwright's assertions wait 5 s by default; a server on a loaded 2-core machine (CI
    # beside other work, numba compiling in the background) can take longer to answer a click.
    expect.set_options(timeout=20_000)
except ImportError:  # the test is skipped below
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ADMIN, READER = secrets.token_urlsafe(16), secrets.token_urlsafe(16)

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"
    ),
    pytest.mark.skipif(
        sync_playwright is None, reason="the playwright package is not installed (pip)"
    ),
]

# a9a's 123 binary features are the UCI Adult attributes, one-hot (LIBSVM's a1a..a9a layout).
A9A_GROUPS = [
    ("age", 5), ("workclass", 8), ("fnlwgt", 5), ("education", 16), ("education_num", 5),
    ("marital_status", 7), ("occupation", 14), ("relationship", 6), ("race", 5), ("sex", 2),
    ("capital_gain", 2), ("capital_loss", 2), ("hours_per_week", 5), ("native_country", 41),
]  # fmt: skip
A9A_NAMES = {}
for _group, _size in A9A_GROUPS:
    for _k in range(_size):
        A9A_NAMES[len(A9A_NAMES) + 1] = f"{_group}={_k + 1}"


def a9a_ndjson(rows: int | None = None) -> list[bytes]:
    """a9a's rows as NDJSON lines with named features."""
    lines = []
    for line in shared_file("a9a", "a9a").read_text().splitlines()[:rows]:
        label, *pairs = line.split()
        features = {A9A_NAMES[int(p.split(":")[0])]: float(p.split(":")[1]) for p in pairs}
        lines.append(json.dumps({"features": features, "label": int(label) > 0}).encode() + b"\n")
    return lines


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    data_dir = tmp_path_factory.mktemp("ui-data")
    env = {"ADASERVE_TOKENS": f"admin:{ADMIN},read:{READER}"}
    process = start_server(data_dir, port, env=env)
    yield f"http://127.0.0.1:{port}"
    output = stop_server(process)
    assert READER not in output and ADMIN not in output, "a token was logged"


@pytest.fixture(scope="module")
def api(server: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=server, headers=headers, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server: str) -> Iterator[tuple[Page, list[str]]]:
    """A fresh page (empty localStorage) and the console errors and page errors it collects;
    a request anywhere but the server (a CDN, say) is an error too."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith((f"{server}/", "data:"))
            else errors.append(f"request elsewhere: {r.url}")
        ),
    )
    page.set_default_timeout(20_000)
    yield page, errors
    context.close()


def stream(api: httpx.Client, path: str, lines: list[bytes]) -> dict:
    response = api.post(
        path, content=b"".join(lines), headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 200, response.text
    summary = json.loads(response.text.strip().splitlines()[-1])
    assert summary["done"] and summary["error"] is None, summary
    return summary


def enter_token(page: Page, token: str) -> None:
    page.fill("#token-input", token)
    page.click("#token-save")


def shot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_model_view(server: str, api: httpx.Client, page, tmp_path: Path) -> None:
    page, errors = page
    assert httpx.get(f"{server}/v1/models").status_code == 401  # auth is on
    config = {"name": "adult", "hash_bits": 18, "optimizer": {"name": "adagrad", "lr": 0.1}}
    created = api.post("/v1/models", json=config)
    assert created.status_code == 201, created.text
    lines = a9a_ndjson()

    # The page itself needs no token; without one it says so and makes no API call.
    page.goto(f"{server}/ui")
    assert page.url == f"{server}/ui/"
    expect(page.locator("#auth-banner")).to_be_visible()
    expect(page.locator("#auth-banner")).to_contain_text("token")
    # A wrong token: the 401 is shown as a prompt (Chromium logs that failed request; allowed).
    enter_token(page, "not-a-token")
    expect(page.locator("#auth-banner")).to_contain_text("refused")
    assert all("401" in e for e in errors), errors
    errors.clear()

    # The read token, kept in localStorage: still there after a reload.
    enter_token(page, READER)
    expect(page.locator("#auth-banner")).to_be_hidden()
    page.reload()
    expect(page.locator("#auth-banner")).to_be_hidden()
    rows_cell = page.locator('#models tr[data-name="adult"] td[data-field="rows"]')
    expect(rows_cell).to_have_attribute("data-value", "0")

    # The list follows a stream: each chunk's rows show up without a reload.
    learned = 0
    for start in range(0, len(lines), 8_200):
        chunk = lines[start : start + 8_200]
        learned = stream(api, "/v1/models/adult/stream", chunk)["rows"] + learned
        expect(rows_cell).to_have_attribute("data-value", str(learned), timeout=15_000)
    assert learned == len(lines) == 32_561
    info = api.get("/v1/models/adult").json()
    loss_cell = page.locator('#models tr[data-name="adult"] td[data-field="log_loss"]')
    assert float(loss_cell.get_attribute("data-value")) == info["metrics"]["overall"]["log_loss"]
    shot(page, tmp_path / "list.png")

    # The model view, by hash navigation.
    page.click('#models a[href="#/models/adult"]')
    page.wait_for_url("**/ui/#/models/adult")
    curve = info["metrics"].get("curve")
    lines_drawn = page.locator("#loss-curve svg path.line")
    expect(lines_drawn.first).to_be_visible()
    points = int(lines_drawn.first.get_attribute("data-points"))
    if curve is not None and len(curve) >= 2:
        assert points == len(curve), "the chart draws the server's loss curve"
    else:  # no server-side curve: the page's own samples, one at least per chunk streamed
        assert points >= 2
    assert lines_drawn.first.get_attribute("d").count("L") == points - 1

    summary = api.get("/v1/models/adult/learning-rates/summary?top=20&bins=30").json()
    bars = page.locator("#rate-histogram svg rect[data-count]")
    expect(bars).to_have_count(30)
    heights = [float(h) for h in bars.evaluate_all("rs => rs.map(r => r.getAttribute('height'))")]
    assert max(heights) > 0
    counts = [int(c) for c in bars.evaluate_all("rs => rs.map(r => r.dataset.count)")]
    assert counts == summary["effective_learning_rate"]["histogram"]["counts"]
    expect(page.locator("#weight-histogram svg rect[data-count]")).to_have_count(30)

    top = summary["top_by_abs_weight"]
    top_rows = page.locator("#top-weight tbody tr")
    expect(top_rows).to_have_count(len(top))
    expect(top_rows.first.locator('[data-field="index"]')).to_have_text(f"{top[0]['index']:,}")
    expect(top_rows.first.locator('[data-field="feature"]')).to_have_text(top[0]["feature"] or "—")
    expect(page.locator("#top-rate tbody tr")).to_have_count(
        len(summary["top_by_effective_learning_rate"])
    )

    # Lookups by name and by index give what the API gives, bit for bit. The name of the
    # heaviest coordinate, through the model's hashing:
    names = list(A9A_NAMES.values())
    hashed = api.get("/v1/models/adult/learning-rates", params={"features": ",".join(names)})
    name_of = {c["index"]: c["feature"] for c in hashed.json()["coordinates"]}
    heaviest = name_of[top[0]["index"]]
    for query, params in [
        (heaviest, {"features": heaviest}),
        (str(top[1]["index"]), {"indices": str(top[1]["index"])}),
    ]:
        expected = api.get("/v1/models/adult/learning-rates", params=params).json()
        (coordinate,) = expected["coordinates"]
        page.fill("#lookup-input", query)
        page.press("#lookup-input", "Enter")
        row = page.locator(f'#lookup-result tr[data-index="{coordinate["index"]}"]')
        expect(row).to_have_count(1)
        shown = {
            field: float(row.locator(f'[data-field="{field}"]').get_attribute("data-value"))
            for field in ("weight", "effective_learning_rate", "times_touched", "last_touched_step")
        }
        assert shown == {k: coordinate[k] for k in shown}, (query, shown, coordinate)
        for slot in coordinate["state"]:
            expect(row.locator('[data-field="state"]')).to_contain_text(f"{slot}=")
        expect(row.locator('[data-field="feature"]')).to_have_text(coordinate["feature"] or "—")
    shot(page, tmp_path / "model.png")
    assert errors == [], errors


def test_experiment_view(server: str, api: httpx.Client, page, tmp_path: Path) -> None:
    page, errors = page
    members = [
        {"name": "race.adagrad", "optimizer": {"name": "adagrad", "lr": 0.1}},
        {"name": "race.adam", "optimizer": {"name": "adam", "lr": 0.01}},
        {"name": "race.ftrl", "optimizer": {"name": "ftrl", "alpha": 0.1}},
    ]
    created = api.post("/v1/experiments", json={"name": "race", "hash_bits": 18, "models": members})
    if created.status_code in (404, 405):
        status = created.status_code
        pytest.skip(f"no experiments API on this server yet (POST /v1/experiments: {status})")
    assert created.status_code == 201, created.text
    stream(api, "/v1/experiments/race/stream", a9a_ndjson(20_000))
    experiment = api.get("/v1/experiments/race").json()
    assert len(experiment["members"]) == 3

    page.goto(f"{server}/ui/")
    enter_token(page, READER)
    expect(page.locator('#experiments tr[data-name="race"]')).to_have_count(1)
    page.click('#experiments a[href="#/experiments/race"]')
    page.wait_for_url("**/ui/#/experiments/race")
    expect(page.locator("#experiment-curves svg path.line")).to_have_count(3)
    for member in experiment["members"]:
        line = page.locator(f'#experiment-curves svg path.line[data-series="{member["model"]}"]')
        points = int(line.get_attribute("data-points"))
        # The server's curve (a point a block of rows), else the page's own samples.
        assert points == len(member["curve"]) if len(member["curve"]) >= 2 else points >= 1
    expect(page.locator("#experiment-curves svg .legend [data-series]")).to_have_count(3)
    rows = page.locator("#leaderboard tbody tr")
    expect(rows).to_have_count(3)
    shown = rows.evaluate_all("rs => rs.map(r => r.dataset.model)")
    assert shown == experiment["leaderboard"]
    best = next(m for m in experiment["members"] if m["model"] == shown[0])
    loss = rows.first.locator('[data-field="log_loss"]').get_attribute("data-value")
    assert float(loss) == best["log_loss"]
    shot(page, tmp_path / "experiment.png")
    # A member is a model: its link opens the model view.
    rows.first.locator("a").click()
    page.wait_for_url(f"**/ui/#/models/{shown[0]}")
    expect(page.locator("#rate-histogram svg rect[data-count]")).to_have_count(30)
    assert errors == [], errors


def periodic_rows(rows: int = 2_048, groups: int = 8, per_group: int = 6) -> list[dict]:
    """Named rows where feature ``g<g>_<i>`` is present every 2**g rows (rows / 2**g touches):
    frequent and rare features side by side; coin-flip labels, so gradients are alike."""
    rng = np.random.default_rng(0)
    out = []
    for r in range(rows):
        features = {
            f"g{g}_{i}": 1.0 for g in range(groups) for i in range(per_group) if (r + i) % 2**g == 0
        }
        out.append({"features": features, "label": int(rng.random() < 0.5)})
    return out


def test_rare_versus_frequent(server: str, api: httpx.Client, page, tmp_path: Path) -> None:
    """The scatter of effective rate against times touched (a model, and an experiment's members
    side by side), the min-touches control of the top by rate, the experiment chart's log scale
    and running mean, the leaderboard's lazy mode and differing hyperparameters."""
    page, errors = page
    rows = periodic_rows()
    config = {"name": "periodic", "hash_bits": 16, "optimizer": {"name": "adagrad", "lr": 0.1}}
    assert api.post("/v1/models", json=config).status_code == 201
    assert api.post("/v1/models/periodic/updates", json={"rows": rows}).status_code == 200
    by_frequency = api.get("/v1/models/periodic/learning-rates/by-frequency").json()

    page.goto(f"{server}/ui/#/models/periodic")
    expect(page.locator("#auth-banner")).to_be_visible()  # the page is set up: a token is asked
    enter_token(page, READER)
    scatter = page.locator("#rate-scatter svg")
    expect(scatter).to_have_attribute("data-points", str(len(by_frequency["points"])))
    assert by_frequency["touched"] == len(by_frequency["points"]) == 48  # all, no collision
    expect(scatter.locator(".points circle")).to_have_count(48)
    median = scatter.locator("path.median")
    expect(median).to_have_attribute("data-points", str(len(by_frequency["bins"])))
    # AdaGrad: the median line goes down from rare (left) to frequent (right) features; SVG's
    # y grows downwards.
    ys = [float(y) for y in scatter.locator(".median-dot").evaluate_all(
        "ds => ds.map(d => d.getAttribute('cy'))")]  # fmt: skip
    assert ys == sorted(ys) and ys[0] < ys[-1], ys
    # Quantiles in order of their level.
    expect(page.locator("#rate-quantiles")).to_contain_text("q0: ")
    shown = page.locator("#rate-quantiles").inner_text()
    levels = [float(part.split(":")[0][1:]) for part in shown.split(" · ")]
    assert levels == sorted(levels) and levels[0] == 0 and levels[-1] == 1, shown

    # Top by effective rate: the rare features (16 touches, bin g7) once the threshold lets them.
    top_touches = page.locator('#top-rate tbody td[data-field="times_touched"]')
    expect(top_touches.first).to_be_visible()
    default = [int(v) for v in top_touches.evaluate_all("cs => cs.map(c => c.dataset.value)")]
    assert min(default) >= 10, default
    page.fill("#min-touches", "100")
    page.press("#min-touches", "Enter")
    page.locator("#min-touches").dispatch_event("change")
    expect(top_touches.first).not_to_have_attribute("data-value", str(default[0]))
    raised = [int(v) for v in top_touches.evaluate_all("cs => cs.map(c => c.dataset.value)")]
    assert min(raised) >= 100 and raised != default, raised
    shot(page, tmp_path / "rates-by-frequency.png")

    members = [
        {"name": "pair.adagrad", "optimizer": {"name": "adagrad", "lr": 0.1}},
        {"name": "pair.rmsprop", "optimizer": {"name": "rmsprop", "lr": 0.01}, "lazy": "frozen"},
        {"name": "pair.adam", "optimizer": {"name": "adam", "lr": 0.01}},
    ]
    created = api.post("/v1/experiments", json={"name": "pair", "hash_bits": 16, "models": members})
    if created.status_code in (404, 405):
        pytest.skip(f"no experiments API on this server yet ({created.status_code})")
    assert created.status_code == 201, created.text
    assert api.post("/v1/experiments/pair/updates", json={"rows": rows}).status_code == 200
    experiment = api.get("/v1/experiments/pair").json()
    assert all(len(m["curve"]) >= 2 for m in experiment["members"])  # 2,048 rows are enough

    page.goto(f"{server}/ui/#/experiments/pair")
    panels = page.locator("#member-scatters svg")
    expect(panels).to_have_count(3)
    for i in range(3):
        expect(panels.nth(i).locator(".points circle").first).to_be_visible()
    # Leaderboard: lazy mode and every hyperparameter that differs (name, lr), not the others.
    board = page.locator("#leaderboard-table")
    for column in ("lazy", "lr", "alpha", "betas"):
        expect(board.locator("th", has_text=column).first).to_be_visible()
    frozen = board.locator('tr[data-model="pair.rmsprop"] td[data-field="lazy"]')
    expect(frozen).to_have_text("frozen")
    expect(board.locator('td[data-field="hp-lr"]')).to_have_count(3)
    # Log scale and running mean redraw the curves.
    chart = page.locator("#experiment-curves svg")
    expect(chart).to_have_attribute("data-y-scale", "linear")
    line = page.locator('#experiment-curves path.line[data-series="pair.adam"]')
    block_path = line.get_attribute("d")
    page.check("#log-scale")
    expect(chart).to_have_attribute("data-y-scale", "log")
    expect(chart.locator(".axes text.label").last).to_contain_text("log scale")
    page.check("#running-mean")
    expect(line).not_to_have_attribute("d", block_path)
    expect(page.locator("#experiment-curves-note")).to_contain_text("Running mean")
    # The legend shows each member's optimizer, inside the drawing.
    legend = page.locator("#experiment-curves svg .legend [data-series]")
    expect(legend).to_have_count(3)
    width = float(chart.evaluate("s => s.viewBox.baseVal.width"))
    for box in legend.evaluate_all(
        "es => es.map(e => { const b = e.getBBox(); return {x: b.x, width: b.width}; })"
    ):
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (box, width)
    expect(legend.first).to_contain_text("adagrad")
    shot(page, tmp_path / "experiment-rates.png")
    # The list's Cluster section (GET /v1/cluster): this process as the one node, holding them.
    page.goto(f"{server}/ui/#/")
    node = page.locator('#nodes tr[data-testid="node-row"]')
    expect(node).to_have_count(1)
    expect(node.locator('[data-field="models"]')).to_contain_text("periodic")
    assert errors == [], errors


def test_watched_feature_curve_grows_while_a_stream_learns(
    server: str, api: httpx.Client, page, tmp_path: Path
) -> None:
    """The lookup box's Watch button adds a feature to the model's watch list; its effective
    rate and weight curves gain a point per chunk streamed, and agree with the API's samples."""
    page, errors = page
    config = {"name": "watched", "hash_bits": 12, "optimizer": {"name": "adagrad", "lr": 0.1}}
    assert api.post("/v1/models", json=config).status_code == 201
    rows = periodic_rows()
    ndjson = [json.dumps(row).encode() + b"\n" for row in rows]
    stream(api, "/v1/models/watched/stream", ndjson[:256])

    page.goto(f"{server}/ui/#/models/watched")
    expect(page.locator("#auth-banner")).to_be_visible()  # the page is set up: a token is asked
    enter_token(page, ADMIN)  # watching is a write
    expect(page.locator("#watch-rate")).to_contain_text("no watched features", timeout=60_000)
    page.fill("#lookup-input", "g0_0, g3_1")
    page.click("#watch-button")
    chips = page.locator('[data-testid="watch-chip"]')
    expect(chips).to_have_count(2, timeout=20_000)
    expect(chips.first).to_contain_text("g0_0")
    listed = api.get("/v1/models/watched/watches").json()
    assert [w["feature"] for w in listed["watches"]] == ["g0_0", "g3_1"]
    assert api.put("/v1/models/watched/watches", json={"every": 256}).status_code == 200

    rate_line = page.locator('#watch-rate path.line[data-series="g0_0"]')
    weight_line = page.locator('#watch-weight path.line[data-series="g0_0"]')
    expect(rate_line).to_have_attribute("data-points", "1", timeout=20_000)  # sampled when added
    for chunk, start in enumerate(range(256, 1_280, 256), start=2):
        stream(api, "/v1/models/watched/stream", ndjson[start : start + 256])
        expect(rate_line).to_have_attribute("data-points", str(chunk), timeout=15_000)
    expect(weight_line).to_have_attribute("data-points", "5")
    curves = api.get("/v1/models/watched/watches/samples").json()["curves"]
    assert curves[0]["steps"] == [256, 512, 768, 1024, 1280]
    rates = curves[0]["effective_learning_rate"]
    assert all(a > b for a, b in itertools.pairwise(rates)), rates  # AdaGrad: seen every row
    shot(page, tmp_path / "watched.png")

    # The chip's button stops watching it.
    page.locator('[data-testid="watch-chip"][data-index] button').first.click()
    expect(chips).to_have_count(1)
    assert [w["feature"] for w in api.get("/v1/models/watched/watches").json()["watches"]] == [
        "g3_1"
    ]
    assert errors == [], errors


def test_api_docs_render_offline_and_try_it_out_sends_the_token(
    server: str, browser, tmp_path: Path
) -> None:
    """/docs (Swagger UI) and /redoc with every request intercepted: each goes to the server
    (127.0.0.1), the route list renders, and "Authorize" then "Try it out" gets a 200 from a
    route that needs a token."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    requested: list[str] = []

    def only_the_server(route) -> None:  # type: ignore[no-untyped-def]
        requested.append(route.request.url)
        if route.request.url.startswith(f"{server}/"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_the_server)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.set_default_timeout(20_000)
    operations = sum(
        len(methods) for methods in httpx.get(f"{server}/openapi.json").json()["paths"].values()
    )

    page.goto(f"{server}/docs")
    expect(page.locator(".opblock")).to_have_count(operations)
    expect(
        page.locator(".opblock-summary-path", has_text="/v1/models/{name}/updates")
    ).to_be_visible()
    page.click("button.authorize")
    page.fill(".auth-container input", READER)
    page.click(".auth-btn-wrapper button.authorize")
    page.click("button.btn-done")
    listing = page.locator("#operations-models-list_models_v1_models_get")  # GET /v1/models
    listing.locator(".opblock-summary").click()
    listing.locator(".try-out__btn").click()
    listing.locator(".execute").click()
    status = listing.locator(".live-responses-table tbody .response-col_status")
    expect(status).to_have_text("200")  # the read token was sent: auth is on
    shot(page, tmp_path / "docs.png")

    page.goto(f"{server}/redoc")
    expect(page.locator("h2", has_text="Learn a batch (CSR or named rows)")).to_be_visible()
    shot(page, tmp_path / "redoc.png")
    context.close()

    assert requested and errors == []
    elsewhere = [url for url in requested if not url.startswith("http://127.0.0.1:")]
    assert elsewhere == [], f"requests left the server: {elsewhere}"


def test_auto_model_shows_its_leaderboard(server: str, api: httpx.Client, page) -> None:
    page, errors = page
    created = api.post("/v1/models", json={"name": "auto", "dim": 64, "optimizer": "auto"})
    assert created.status_code == 201, created.text
    rng = np.random.default_rng(5)
    indices = [sorted(rng.choice(64, size=5, replace=False).tolist()) for _ in range(2_000)]
    body = {
        "indptr": [5 * i for i in range(2_001)],
        "indices": [j for row in indices for j in row],
        "values": [1.0] * 10_000,
        "labels": [int(row[0] < 20) for row in indices],
    }
    assert api.post("/v1/models/auto/updates", json=body).status_code == 200
    portfolio = api.get("/v1/models/auto").json()["portfolio"]
    page.goto(f"{server}/ui/#/models/auto")
    expect(page.locator("#auth-banner")).to_be_visible()  # the page has set its token form up
    enter_token(page, READER)
    board = page.locator("#leaderboard-table tbody tr")
    expect(board).to_have_count(len(portfolio["leaderboard"]))
    names = board.locator('td[data-field="name"]').evaluate_all(
        "cells => cells.map(c => c.dataset.value)"
    )
    assert names == [m["name"] for m in portfolio["leaderboard"]]
    expect(page.locator("#leaderboard")).to_contain_text(f"led by {portfolio['leader']}")
    expect(page.locator("#leaderboard-table")).to_contain_text(f"{portfolio['leader']} ★")
    summary = page.locator('#model-summary [data-field="optimizer"]')
    expect(summary).to_contain_text("auto (5 members)")
    assert not errors, errors
