"""The README's dashboard screenshots, from a real run: ``python docs/screenshots.py``.

Starts ``adaserve serve`` on a free loopback port with a temporary data directory, streams a9a
(the UCI Adult attributes, one-hot; ``../shared/data/a9a/a9a``) as named rows into an experiment
of three members (AdaGrad, RMSProp, Adam), watches two features of the AdaGrad member, and
photographs the experiment view and the member's watched-features panel in headless Chromium
(``/usr/bin/chromium`` through playwright) into ``docs/``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
# shared/ lives beside the repository (beside the main checkout for a git worktree)
A9A = next(
    (p / "shared" / "data" / "a9a" / "a9a" for p in ROOT.parents if (p / "shared").is_dir()),
    ROOT.parent / "shared" / "data" / "a9a" / "a9a",
)
GROUPS = [
    ("age", 5), ("workclass", 8), ("fnlwgt", 5), ("education", 16), ("education_num", 5),
    ("marital_status", 7), ("occupation", 14), ("relationship", 6), ("race", 5), ("sex", 2),
    ("capital_gain", 2), ("capital_loss", 2), ("hours_per_week", 5), ("native_country", 41),
]  # fmt: skip
NAMES = [f"{group}={k + 1}" for group, size in GROUPS for k in range(size)]


def ndjson(path: Path) -> list[bytes]:
    lines = []
    for line in path.read_text().splitlines():
        label, *pairs = line.split()
        features = {NAMES[int(p.split(":")[0]) - 1]: float(p.split(":")[1]) for p in pairs}
        lines.append(json.dumps({"features": features, "label": int(label) > 0}).encode() + b"\n")
    return lines


def main() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port), "--data-dir", data],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            api = httpx.Client(base_url=base, timeout=600)
            members = [
                {"name": "adult.adagrad", "optimizer": {"name": "adagrad", "lr": 0.1}},
                {"name": "adult.rmsprop", "optimizer": {"name": "rmsprop", "lr": 0.001}},
                {"name": "adult.adam", "optimizer": {"name": "adam", "lr": 0.01}},
            ]
            api.post("/v1/experiments", json={"name": "adult", "hash_bits": 16,
                                              "models": members}).raise_for_status()  # fmt: skip
            for feature in ("marital_status=3", "native_country=39"):  # frequent, rare
                api.post("/v1/models/adult.adagrad/watches",
                         json={"feature": feature, "every": 1000}).raise_for_status()  # fmt: skip
            lines = ndjson(A9A)
            for start in range(0, len(lines), 4_000):
                chunk = b"".join(lines[start : start + 4_000])
                api.post(
                    "/v1/experiments/adult/stream", content=chunk,
                    headers={"Content-Type": "application/x-ndjson"},
                ).raise_for_status()  # fmt: skip
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=["--headless", "--no-sandbox"])  # fmt: skip
                page = browser.new_page(viewport={"width": 1200, "height": 1000})
                page.goto(f"{base}/ui/#/experiments/adult")
                page.wait_for_selector("#member-scatters svg circle", timeout=60_000)
                page.wait_for_timeout(1_000)
                page.screenshot(path=str(ROOT / "docs" / "dashboard-experiment.png"))
                page.goto(f"{base}/ui/#/models/adult.adagrad")
                page.wait_for_selector("#watch-rate path.line", timeout=60_000)
                page.locator("#watched").screenshot(
                    path=str(ROOT / "docs" / "dashboard-watched.png")
                )
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
