"""``adaserve serve --ray`` on a local two-node Ray cluster (one CPU each, no dashboard).

Ray binds the machine's interface address even when told 127.0.0.1 (ray-project/ray#59110),
so the cases run inside a network namespace that has only loopback: the one collected test
outside (:func:`test_in_a_loopback_namespace`) runs this file again under ``unshare --net``,
where the others run against one cluster and one server, in order (the last restarts the
service). Skipped with the reason when Ray is not installed or no namespace can be made.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from servers import free_port, start_server, stop_server
from streams import sparse_stream
from test_parsers import CRITEO

from optim import Batch, OnlineLogisticRegression
from optim.formats import parse_bytes

pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
import httpx

INSIDE = "ADASERVE_RAY_TESTS_INSIDE"
TOKENS = {"read": "r-secret", "write": "w-secret", "admin": "a-secret"}
DIM = 1 << 12
TIMEOUT = 180  # a host actor's process starts in seconds, more on a loaded machine
# The read replicas' staleness bound: rows acknowledged a replica may miss and still answer.
MAX_ROWS_BEHIND = 200
# Brings ``lo`` up without iproute2: SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP.
LO_UP = (
    "import fcntl, socket, struct; s = socket.socket(); "
    "f = struct.unpack('16sH', fcntl.ioctl(s, 0x8913, struct.pack('16sH22x', b'lo', 0))[:18])[1]; "
    "fcntl.ioctl(s, 0x8914, struct.pack('16sH22x', b'lo', f | 1))"
)


def _namespace_problem() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare command: the Ray tests need a loopback-only network namespace"
    try:
        made = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare --net failed: {exc}"
    if made.returncode != 0:
        return f"cannot make a network namespace (root needed): {made.stderr.decode().strip()}"
    return None


def test_in_a_loopback_namespace() -> None:
    """Every case below, in a namespace of their own (see the module's docstring)."""
    if os.environ.get(INSIDE):
        pytest.skip("this run is the one inside the namespace")
    problem = _namespace_problem()
    if problem:
        pytest.skip(problem)
    lo_up = "ip link set lo up" if shutil.which("ip") else f'{sys.executable} -c "{LO_UP}"'
    here = Path(__file__).resolve()
    root = next(folder for folder in here.parents if (folder / "pyproject.toml").exists())
    command = (
        f"{lo_up} && exec {sys.executable} -m pytest -q -x -p no:cacheprovider "
        f"{here} -k 'not test_in_a_loopback_namespace'"
    )
    run = subprocess.run(
        ["unshare", "--net", "sh", "-c", command], cwd=root,
        env={**os.environ, INSIDE: "1"}, capture_output=True, timeout=1_200,
    )  # fmt: skip
    output = (run.stdout + run.stderr).decode(errors="replace")
    print(output)
    assert run.returncode == 0, output[-6_000:]


# ---------------------------------------------------------------------- inside the namespace
@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    if not os.environ.get(INSIDE):
        pytest.skip("runs inside the loopback namespace (test_in_a_loopback_namespace)")
    import ray
    from ray.cluster_utils import Cluster

    local = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
    made = Cluster(initialize_head=True, head_node_args={**local, "include_dashboard": False})
    try:
        made.add_node(**local)
        made.wait_for_nodes()
        yield made
    finally:
        ray.shutdown()
        made.shutdown()


class Service:
    """The ``adaserve serve --ray`` process on the cluster, and clients with each role."""

    def __init__(self, cluster: Any, data_dir: Path) -> None:
        self.cluster, self.data_dir = cluster, data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        tokens = ",".join(f"{role}:{token}" for role, token in TOKENS.items())
        env = {"ADASERVE_TOKENS": tokens, "ADASERVE_REPLICA_MAX_ROWS_BEHIND": str(MAX_ROWS_BEHIND)}
        self.process = start_server(
            self.data_dir, self.port, "--ray", self.cluster.address, env=env, quiet=True
        )

    def stop(self) -> None:
        assert self.process is not None
        stop_server(self.process)
        self.process = None

    def client(self, role: str | None = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def service(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    served = Service(cluster, tmp_path_factory.mktemp("shared-data"))
    served.start()
    try:
        yield served
    finally:
        if served.process is not None:
            served.stop()


@pytest.fixture(scope="module")
def admin(service: Service) -> Iterator[httpx.Client]:
    with service.client() as client:
        yield client


def csr(batch: Batch) -> dict[str, Any]:
    body = {"indptr": batch.indptr.tolist(), "indices": batch.indices.tolist(),
            "values": batch.values.tolist()}  # fmt: skip
    if batch.labels is not None:
        body["labels"] = batch.labels.tolist()
    return body


def stream_text(seed: int, n_rows: int, fmt: str = "libsvm") -> bytes:
    """Rows of :func:`sparse_stream` written as ``fmt`` (libsvm, vw or ndjson)."""
    rows, labels, _ = sparse_stream(seed, dim=64, n_rows=n_rows)
    lines = []
    for (indices, values), label in zip(rows, labels, strict=True):
        pairs = sorted(zip(indices.tolist(), values.tolist(), strict=True))
        if fmt == "ndjson":
            line = {"indices": [i for i, _ in pairs], "values": [v for _, v in pairs]}
            lines.append(json.dumps({**line, "label": int(label)}))
        elif fmt == "vw":
            lines.append(f"{1 if label else -1} |f " + " ".join(f"c{i}:{v!r}" for i, v in pairs))
        else:
            lines.append(f"{int(label)} " + " ".join(f"{i}:{v!r}" for i, v in pairs))
    return ("\n".join(lines) + "\n").encode()


def cluster_view(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/v1/cluster")
    assert response.status_code == 200, response.text
    return response.json()


def learned_alone(config: dict[str, Any], batches: list[Batch]) -> OnlineLogisticRegression:
    model = OnlineLogisticRegression(**config)
    for batch in batches:
        model.learn_batch(batch)
    return model


CONFIG = {"optimizer": {"name": "adagrad", "lr": 0.1}, "dim": DIM}
FORMATS = {"libsvm": "text/x-libsvm", "vw": "text/x-vw", "ndjson": "application/x-ndjson",
           "criteo": "text/x-criteo"}  # fmt: skip


def test_core_routes_against_the_ray_served_app(service: Service, admin: httpx.Client) -> None:
    """Create, updates, the four stream formats, predict, rates, export/import, auth and
    errors: each answer equals what the same calls give the library in this process."""
    assert admin.post("/v1/models", json={"name": "core", **CONFIG}).status_code == 201
    reference = OnlineLogisticRegression(**CONFIG)
    # the same name again, a bad name, a bad optimizer: refused, nothing made
    assert admin.post("/v1/models", json={"name": "core", **CONFIG}).json()["error"] == (
        "model_exists"
    )
    bad = admin.post("/v1/models", json={"name": "a/b", "dim": 8})
    assert bad.status_code in (404, 422), bad.text
    bad = admin.post("/v1/models", json={"name": "x", "dim": 8, "optimizer": "nope"})
    assert bad.status_code == 422 and bad.json()["where"]["field"] == "optimizer.name", bad.text

    # updates: CSR and named rows
    batch = parse_bytes(stream_text(3, 40), "libsvm", dim=DIM)
    answer = admin.post("/v1/models/core/updates", json=csr(batch)).json()
    expected = reference.learn_batch(batch)
    assert answer["step"] == expected.step == 40
    assert answer["log_loss"] == pytest.approx(expected.log_loss, abs=1e-12)
    named = {"rows": [{"features": {"city=paris": 1.0, "age": 0.5}, "label": 1}]}
    answer = admin.post("/v1/models/core/updates", json=named).json()
    expected = reference.learn([{"city=paris": 1.0, "age": 0.5}], [1])
    assert answer["step"] == expected.step == 41

    # the four stream formats, each learned as the library learns the parsed text
    samples = {"libsvm": stream_text(4, 60), "vw": stream_text(5, 60, "vw"),
               "ndjson": stream_text(6, 60, "ndjson"), "criteo": CRITEO}  # fmt: skip
    for fmt, text in samples.items():
        response = admin.post(
            "/v1/models/core/stream", content=text, headers={"Content-Type": FORMATS[fmt]}
        )
        summary = json.loads(response.text.strip().splitlines()[-1])
        expected = reference.learn_batch(parse_bytes(text, fmt, dim=DIM))
        assert summary["error"] is None, (fmt, summary)
        assert summary["step"] == expected.step, fmt
        assert summary["log_loss"] == pytest.approx(expected.log_loss, abs=1e-9), fmt

    # predict (small and large bodies), rates, the model's description
    probe = parse_bytes(stream_text(7, 300), "libsvm", dim=DIM, require_labels=False)
    for rows_wanted in (1, 300):
        end = probe.indptr[rows_wanted]
        first = probe.indptr[: rows_wanted + 1], probe.indices[:end], probe.values[:end]
        body = csr(Batch.from_arrays(*first, dim=DIM))
        got = admin.post("/v1/models/core/predict", json=body).json()["probabilities"]
        want = reference.predict_proba(
            Batch.from_arrays(body["indptr"], body["indices"], body["values"], dim=DIM)
        )[:, 1]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    rates = admin.get("/v1/models/core/learning-rates?indices=0,1,7").json()
    wanted = reference.inspect_coordinates([0, 1, 7])
    # the route's answer also says "shared_with" (null: no other name at the coordinate)
    assert [set(c) - {"shared_with"} for c in rates["coordinates"]] == [set(c) for c in wanted]
    for got, want in zip(rates["coordinates"], wanted, strict=True):
        for key, value in want.items():
            assert got[key] == (pytest.approx(value, abs=1e-12) if value is not None else None)
    assert admin.get("/v1/models/core/learning-rates/summary").status_code == 200
    info = admin.get("/v1/models/core").json()
    assert info["step"] == reference.step and info["status"] == "ready"

    # export equals the library's state; import of another state replaces it
    exported = OnlineLogisticRegression.load(
        io.BytesIO(admin.get("/v1/models/core/export").content)
    )
    np.testing.assert_array_equal(exported.coef_, reference.coef_)
    other = OnlineLogisticRegression(**CONFIG)
    other.learn_batch(parse_bytes(stream_text(8, 30), "libsvm", dim=DIM))
    imported = admin.post(
        "/v1/models/core/import", content=other.to_bytes(),
        headers={"Content-Type": "application/x-adaserve-model"},
    )  # fmt: skip
    assert imported.status_code == 200 and imported.json()["step"] == 30, imported.text
    got = admin.post("/v1/models/core/predict", json=csr(probe)).json()["probabilities"]
    np.testing.assert_allclose(got, other.predict_proba(probe)[:, 1], rtol=0, atol=1e-12)
    assert admin.post("/v1/models/core/snapshot").json()["step"] == 30
    # an import into a name no model has creates the model from the file, on a host of its own
    created = admin.post(
        "/v1/models/core-copy/import", content=other.to_bytes(),
        headers={"Content-Type": "application/x-adaserve-model"},
    )  # fmt: skip
    assert created.status_code == 201 and created.json()["created"] is True, created.text
    got = admin.post("/v1/models/core-copy/predict", json=csr(probe)).json()["probabilities"]
    np.testing.assert_allclose(got, other.predict_proba(probe)[:, 1], rtol=0, atol=1e-12)
    assert "core-copy" in cluster_view(admin)["hosts"]
    assert admin.delete("/v1/models/core-copy").status_code == 204

    # auth: no token 401, too little 403, enough 2xx
    with service.client(None) as anonymous, service.client("read") as reader:
        assert anonymous.get("/v1/models").status_code == 401
        assert reader.get("/v1/models").status_code == 200
        assert reader.post("/v1/models/core/updates", json=csr(batch)).status_code == 403
        assert reader.get("/v1/models/core/export").status_code == 403
        assert reader.get("/v1/cluster").status_code == 200
        assert reader.get("/metrics").status_code == 200
    with service.client("write") as writer:
        assert writer.post("/v1/models", json={"name": "w", "dim": 8}).status_code == 403
        assert writer.post("/v1/models/core/updates", json=csr(batch)).status_code == 200

    # errors: unknown model, bad JSON, an index past dim, a malformed stream line
    missing = admin.get("/v1/models/nope")
    assert (missing.status_code, missing.json()["error"]) == (404, "model_not_found")
    broken = admin.post(
        "/v1/models/core/updates", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert (broken.status_code, broken.json()["error"]) == (422, "invalid_json")
    past = {"indptr": [0, 1], "indices": [DIM], "values": [1.0], "labels": [1]}
    refused = admin.post("/v1/models/core/updates", json=past)
    assert refused.status_code == 422 and refused.json()["where"]["field"] == "indices"
    stopped = admin.post(
        "/v1/models/core/stream",
        content=b"1 1:1\n1 x:y\n",
        headers={"Content-Type": "text/x-libsvm"},
    )
    summary = json.loads(stopped.text.strip().splitlines()[-1])
    assert summary["rows"] == 1 and summary["error"]["line"] == 2
    assert admin.delete("/v1/models/core").status_code == 204
    assert admin.get("/v1/models/core").status_code == 404


def test_four_models_streamed_at_once_learn_as_alone_spread_over_both_nodes(
    admin: httpx.Client,
) -> None:
    texts = {f"s{i}": stream_text(10 + i, 3_000) for i in range(4)}
    for name in texts:
        assert admin.post("/v1/models", json={"name": name, **CONFIG}).status_code == 201
    summaries: dict[str, dict[str, Any]] = {}

    def stream(name: str) -> None:
        response = admin.post(
            f"/v1/models/{name}/stream", content=texts[name],
            headers={"Content-Type": "text/x-libsvm"},
        )  # fmt: skip
        summaries[name] = json.loads(response.text.strip().splitlines()[-1])

    threads = [threading.Thread(target=stream, args=(name,)) for name in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, text in texts.items():
        alone = OnlineLogisticRegression(**CONFIG)
        expected = alone.learn_batch(parse_bytes(text, "libsvm", dim=DIM))
        assert summaries[name]["error"] is None and summaries[name]["step"] == 3_000
        assert summaries[name]["log_loss"] == pytest.approx(expected.log_loss, abs=1e-9)
    view = cluster_view(admin)
    assert len(view["nodes"]) == 2
    for node in view["nodes"]:
        assert len([m for m in node["models"] if m in texts]) == 2, view


def test_an_experiment_learns_one_stream_in_members_on_both_nodes(admin: httpx.Client) -> None:
    optimizers = [{"name": "adagrad", "lr": 0.1}, {"name": "sgd", "lr": 0.05}]
    created = admin.post(
        "/v1/experiments",
        json={"name": "exp", "dim": DIM, "models": [{"optimizer": o} for o in optimizers]},
    )
    assert created.status_code == 201, created.text
    text = stream_text(20, 2_000)
    response = admin.post(
        "/v1/experiments/exp/stream", content=text, headers={"Content-Type": "text/x-libsvm"}
    )
    summary = json.loads(response.text.strip().splitlines()[-1])
    batch = parse_bytes(text, "libsvm", dim=DIM)
    for i, optimizer in enumerate(optimizers):
        expected = OnlineLogisticRegression(optimizer, dim=DIM).learn_batch(batch)
        member = summary["members"][f"exp.{i}"]
        assert member["step"] == 2_000
        assert member["log_loss"] == pytest.approx(expected.log_loss, abs=1e-9)
    hosts = cluster_view(admin)["hosts"]
    assert hosts["exp.0"]["node"] != hosts["exp.1"]["node"]


def test_a_killed_host_is_recovered_on_the_other_node_with_every_acknowledged_batch(
    admin: httpx.Client,
) -> None:
    assert admin.post("/v1/models", json={"name": "victim", **CONFIG}).status_code == 201
    batches = [
        parse_bytes(stream_text(30 + i, 50), "libsvm", dim=DIM) for i in range(12)
    ]  # fmt: skip
    acknowledged: list[Batch] = []
    answers: list[tuple[int, str | None]] = []

    def send(batch: Batch) -> None:
        response = admin.post("/v1/models/victim/updates", json=csr(batch))
        error = None if response.status_code == 200 else response.json()["error"]
        answers.append((response.status_code, error))
        if response.status_code == 200:
            acknowledged.append(batch)

    for batch in batches[:5]:
        send(batch)
    before = cluster_view(admin)["hosts"]["victim"]
    os.kill(before["pid"], signal.SIGKILL)  # the host's process dies between two writes
    states = []
    for batch in batches[5:]:  # sent while it is recovered: refused (503) until it is back
        send(batch)
        states.append(cluster_view(admin)["models"].get("victim"))
    while (state := cluster_view(admin)["models"]["victim"]) == "recovering":
        states.append(state)
        time.sleep(0.2)
    send(batches[-1])
    assert set(answers) <= {(200, None), (503, "model_recovering")}, answers
    # Before the kill every update is acknowledged; the first one after it is refused: either
    # its call reaches the dead host (503), or the ingress saw the death first and the model is
    # recovering until a new host process has started and replayed the files, which cannot
    # happen between SIGKILL and the next request. Once it is back, updates are acknowledged.
    assert answers[:5] == [(200, None)] * 5, answers
    assert answers[5] == (503, "model_recovering"), answers
    assert answers[-1] == (200, None), answers
    assert set(states) <= {"ready", "recovering"}
    after = cluster_view(admin)["hosts"]["victim"]
    assert after["node"] != before["node"] and after["pid"] != before["pid"]
    replayed = learned_alone(CONFIG, acknowledged)
    exported = admin.get("/v1/models/victim/export").content
    recovered = OnlineLogisticRegression.load(io.BytesIO(exported))
    assert recovered.step == replayed.step == sum(b.n_rows for b in acknowledged)
    np.testing.assert_array_equal(recovered.coef_, replayed.coef_)
    assert recovered.metrics.to_dict() == replayed.metrics.to_dict()


def replicas_of(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    return cluster_view(client)["replicas"].get(name, [])


def until_replica(client: httpx.Client, name: str, ready: Any) -> dict[str, Any]:
    """The model's one replica once ``ready(replica)`` (it is placed and loads in seconds)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        replicas = replicas_of(client, name)
        if replicas and ready(replicas[0]):
            return replicas[0]
        time.sleep(0.2)
    raise AssertionError(f"the replica of {name} never got ready: {replicas_of(client, name)}")


def test_a_read_replica_on_the_other_node_answers_predictions_within_its_staleness_bound(
    admin: httpx.Client,
) -> None:
    """A model with one read replica: placed on the node its owner is not on; predictions go
    to both in turn, each equal (1e-12) to the model at a step at most the bound behind the
    updates acknowledged, and to the current model once the replica caught up; updates are
    acknowledged and durable; killing the replica's process never fails a prediction, and
    another replica is made."""
    created = admin.post("/v1/models", json={"name": "reads", "read_replicas": 1, **CONFIG})
    assert created.status_code == 201, created.text
    replica = until_replica(admin, "reads", lambda r: r["state"] == "ready")
    owner = cluster_view(admin)["hosts"]["reads"]
    assert replica["node"] != owner["node"] and replica["pid"] != owner["pid"]
    assert (
        "reads"
        in next(n for n in cluster_view(admin)["nodes"] if n["id"] == replica["node"])["replicas"]
    )

    probe = parse_bytes(stream_text(40, 20), "libsvm", dim=DIM, require_labels=False)
    reference = OnlineLogisticRegression(**CONFIG)
    # The reference's probabilities after each acknowledged batch (and before the first).
    by_step = {0: reference.predict_proba(probe)[:, 1]}

    def predict() -> np.ndarray:
        response = admin.post("/v1/models/reads/predict", json=csr(probe))
        assert response.status_code == 200, response.text
        return np.array(response.json()["probabilities"])

    def steps_matching(got: np.ndarray) -> list[int]:
        return [s for s, p in by_step.items() if np.allclose(got, p, rtol=0, atol=1e-12)]

    acknowledged = []
    served_before = replica["predictions"]
    for i in range(10):  # 50 rows a batch: four batches make the bound
        batch = parse_bytes(stream_text(50 + i, 50), "libsvm", dim=DIM)
        answer = admin.post("/v1/models/reads/updates", json=csr(batch))
        assert answer.status_code == 200, answer.text
        acknowledged.append(batch)
        reference.learn_batch(batch)
        by_step[reference.step] = reference.predict_proba(probe)[:, 1]
        for _ in range(2):  # the owner's turn and the replica's
            matching = steps_matching(predict())
            assert matching and reference.step - max(matching) <= MAX_ROWS_BEHIND, matching
    replica = until_replica(admin, "reads", lambda r: r["rows_behind"] == 0)
    assert replica["predictions"] > served_before  # it answered some of those

    served_before = replica["predictions"]
    for _ in range(6):  # caught up: every answer is the current model's
        np.testing.assert_allclose(predict(), by_step[reference.step], rtol=0, atol=1e-12)
    assert replicas_of(admin, "reads")[0]["predictions"] == served_before + 3
    exported = OnlineLogisticRegression.load(
        io.BytesIO(admin.get("/v1/models/reads/export").content)
    )
    np.testing.assert_array_equal(exported.coef_, learned_alone(CONFIG, acknowledged).coef_)

    # an import replaces the state: no prediction answers from the one before once it is
    # acknowledged (the replica answers nothing until it has loaded the import)
    other = OnlineLogisticRegression(**CONFIG)
    other.learn_batch(parse_bytes(stream_text(70, 120), "libsvm", dim=DIM))
    current = other.predict_proba(probe)[:, 1]
    imported = admin.post(
        "/v1/models/reads/import", content=other.to_bytes(),
        headers={"Content-Type": "application/x-adaserve-model"},
    )  # fmt: skip
    assert imported.status_code == 200, imported.text
    for _ in range(6):
        np.testing.assert_allclose(predict(), current, rtol=0, atol=1e-12)
    replica = until_replica(admin, "reads", lambda r: r["step"] == 120 and r["rows_behind"] == 0)
    for _ in range(4):
        np.testing.assert_allclose(predict(), current, rtol=0, atol=1e-12)
    assert replicas_of(admin, "reads")[0]["predictions"] == replica["predictions"] + 2

    os.kill(replica["pid"], signal.SIGKILL)  # predictions go on: the owner answers meanwhile
    for _ in range(20):
        np.testing.assert_allclose(predict(), current, rtol=0, atol=1e-12)
    assert cluster_view(admin)["models"]["reads"] == "ready"
    again = until_replica(
        admin, "reads", lambda r: r["state"] == "ready" and r["pid"] != replica["pid"]
    )
    assert again["node"] != owner["node"]
    for _ in range(4):
        np.testing.assert_allclose(predict(), current, rtol=0, atol=1e-12)
    assert replicas_of(admin, "reads")[0]["predictions"] > again["predictions"]


def until_recovered(client: httpx.Client, name: str, dead_pid: int) -> dict[str, Any]:
    """The host of ``name`` once a process other than ``dead_pid`` serves it again."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        view = cluster_view(client)
        host = view["hosts"].get(name, {})
        if view["models"].get(name) == "ready" and host.get("pid") not in (None, dead_pid):
            return host
        time.sleep(0.2)
    raise AssertionError(f"{name} was never recovered: {cluster_view(client)}")


def flat(tree: Any, path: str = "") -> dict[str, Any]:
    """A JSON tree's leaves by their path."""
    if isinstance(tree, dict | list):
        items = tree.items() if isinstance(tree, dict) else enumerate(tree)
        return {k: v for key, value in items for k, v in flat(value, f"{path}.{key}").items()}
    return {path: tree}


def assert_agree(got: Any, want: Any) -> None:
    """The same tree, its floats to 1e-9."""
    got, want = flat(got), flat(want)
    assert got.keys() == want.keys(), (got, want)
    for key, value in want.items():
        assert got[key] == (pytest.approx(value, rel=0, abs=1e-9) if isinstance(value, float)
                            else value), key  # fmt: skip


def learning_samples(text: str, model: str) -> dict[tuple[str, tuple], float]:
    """``/metrics``' samples of what ``model`` learned: its delayed labels, rows learned and
    progressive log-loss (label delays are the servers' own: their quantiles are left out)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = ("adaserve_feedback_", "adaserve_progressive", "adaserve_recent_progressive",
              "adaserve_rows_learned_total")  # fmt: skip
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("model") == model
        and sample.name.startswith(wanted)
        and not sample.name.startswith("adaserve_feedback_delay_seconds")
    }


def test_delayed_labels_learn_as_in_the_single_process_and_outlive_a_killed_host(
    admin: httpx.Client, tmp_path: Path
) -> None:
    """A model with feedback on the cluster and in a single-process app (in this process) get
    the same requests: predictions with ids, labels as JSON, with weights and as NDJSON, refused
    ids; the host is killed with 35 rows pending, and labels for 25 of them reach the model
    recovered from its files. Every answer, the model learned, its info and /metrics agree."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    created = {"name": "fb", **CONFIG, "feedback": {"ttl_seconds": 3600, "on_expiry": "negative"}}
    batch = parse_bytes(stream_text(90, 100), "libsvm", dim=DIM)
    rows = {key: value for key, value in csr(batch).items() if key != "labels"}
    labels = batch.labels.astype(int).tolist()
    ids = [f"imp-{k}" for k in range(100)]
    rng = np.random.default_rng(91)
    order = rng.permutation(100).tolist()
    weights = rng.uniform(0.5, 2.0, 100).tolist()

    def as_json(part: list[int], weighted: bool = False) -> dict[str, Any]:
        body = {"ids": [ids[k] for k in part], "labels": [labels[k] for k in part]}
        return {**body, "weights": [weights[k] for k in part]} if weighted else body

    def as_ndjson(part: list[int]) -> dict[str, Any]:
        lines = [{"id": ids[k], "label": labels[k], "weight": weights[k]} for k in part]
        return {"content": "".join(json.dumps(line) + "\n" for line in lines),
                "headers": {"Content-Type": "application/x-ndjson"}}  # fmt: skip

    with TestClient(create_app(Settings(data_dir=tmp_path, warm_kernels=False))) as single:

        def both(method: str, path: str, **request: Any) -> tuple[Any, Any]:
            """The cluster's answer and the single process's, with the same status."""
            on_ray, alone = (
                admin.request(method, path, **request),
                single.request(method, path, **request),
            )
            assert on_ray.status_code == alone.status_code, (path, on_ray.text, alone.text)
            return on_ray.json(), alone.json()

        def label(request: dict[str, Any]) -> None:
            if "content" not in request:
                request = {"json": request}
            on_ray, alone = both("POST", "/v1/models/fb/feedback", **request)
            assert on_ray.keys() == {"rows", "step", "log_loss", "probabilities"}, on_ray
            assert_agree(on_ray, alone)

        on_ray, alone = both("POST", "/v1/models", json=created)
        assert on_ray["feedback"] == alone["feedback"] and on_ray["feedback"]["pending"] == 0
        on_ray, alone = both("POST", "/v1/models/fb/predict", json={**rows, "ids": ids})
        assert_agree(on_ray, alone)
        label(as_json(order[:30]))
        label(as_json(order[30:50], weighted=True))
        label(as_ndjson(order[50:65]))
        # refused alike: an id pending already (409), an unknown or labelled one (422)
        again = {"rows": [{"features": {"a": 1.0}}], "ids": [ids[order[70]]]}
        on_ray, alone = both("POST", "/v1/models/fb/predict", json=again)
        assert on_ray == alone and on_ray["error"] == "duplicate_ids", on_ray
        for refused in ({"ids": [ids[order[70]], "nope"], "labels": [1, 0]}, as_json(order[:1])):
            on_ray, alone = both("POST", "/v1/models/fb/feedback", json=refused)
            assert on_ray == alone and on_ray["error"] == "invalid_ids", on_ray

        before = cluster_view(admin)["hosts"]["fb"]
        os.kill(before["pid"], signal.SIGKILL)  # 35 rows pending, in its files only now
        after = until_recovered(admin, "fb", before["pid"])
        assert after["node"] != before["node"]
        on_ray, alone = both("GET", "/v1/models/fb")
        assert on_ray["feedback"]["pending"] == alone["feedback"]["pending"] == 35
        label(as_json(order[65:80], weighted=True))
        label(as_ndjson(order[80:90]))
        on_ray, alone = both("POST", "/v1/models/fb/feedback", json=as_json(order[50:51]))
        assert on_ray == alone and on_ray["error"] == "invalid_ids", on_ray

        on_ray, alone = both("GET", "/v1/models/fb")
        for info in (on_ray, alone):
            delays = info["feedback"].pop("delay_seconds")
            assert delays["labels"] == 90 and delays["p50"] >= 0
        assert on_ray["feedback"]["pending"] == 10 and on_ray["feedback"]["labelled"] == 90
        assert_agree({k: on_ray[k] for k in ("step", "metrics", "feedback")},
                     {k: alone[k] for k in ("step", "metrics", "feedback")})  # fmt: skip
        from_ray = OnlineLogisticRegression.load(
            io.BytesIO(admin.get("/v1/models/fb/export").content)
        )
        reference = OnlineLogisticRegression.load(
            io.BytesIO(single.get("/v1/models/fb/export").content)
        )
        assert from_ray.step == reference.step == 90
        np.testing.assert_allclose(from_ray.table, reference.table, rtol=0, atol=1e-9)
        assert list(from_ray.feedback.pending) == list(reference.feedback.pending)
        assert list(reference.feedback.pending) == [ids[k] for k in sorted(order[90:])]
        scraped = learning_samples(admin.get("/metrics").text, "fb")
        expected = learning_samples(single.get("/metrics").text, "fb")
        assert scraped.keys() == expected.keys(), (scraped, expected)
        assert len(scraped) >= 10  # rows pending, resolved, the join rate, served metrics, ...
        for key, value in expected.items():
            assert scraped[key] == pytest.approx(value, rel=0, abs=1e-9), key


def test_restarting_the_service_on_the_same_cluster_recovers_every_model(
    service: Service, admin: httpx.Client
) -> None:
    names = [m["name"] for m in admin.get("/v1/models").json()["models"]]
    assert {"s0", "s1", "s2", "s3", "exp.0", "exp.1", "victim", "reads"} <= set(names)
    exported = {name: admin.get(f"/v1/models/{name}/export").content for name in names}
    service.stop()
    service.start()
    while "recovering" in cluster_view(admin)["models"].values():
        time.sleep(0.2)
    view = cluster_view(admin)
    assert view["models"] == dict.fromkeys(sorted(names), "ready")
    assert {node["id"] for node in view["nodes"]} == {h["node"] for h in view["hosts"].values()}
    for name in names:
        before = OnlineLogisticRegression.load(io.BytesIO(exported[name]))
        after = OnlineLogisticRegression.load(
            io.BytesIO(admin.get(f"/v1/models/{name}/export").content)
        )
        assert after.step == before.step, name
        np.testing.assert_array_equal(after.coef_, before.coef_)
    experiment = admin.get("/v1/experiments/exp").json()
    assert [m["model"] for m in experiment["members"]] == ["exp.0", "exp.1"]
    # the read replica is made again (its count is in the model's files), and deleted with it
    until_replica(admin, "reads", lambda r: r["state"] == "ready")
    assert admin.delete("/v1/models/reads").status_code == 204
    view = cluster_view(admin)
    assert "reads" not in view["replicas"] and all(not n["replicas"] for n in view["nodes"])
