"""The Ray path against the single process, same run, loopback only.

    python loadtest/bench_cluster.py            # -> loadtest/REPORT_CLUSTER.md
    python loadtest/bench_cluster.py --rows 2000 --out /tmp/x   # a quick look

Runs itself again inside a network namespace that has only loopback (``unshare --net``, root:
Ray binds the machine's interface address otherwise, ray-project/ray#59110). There it starts a
local Ray cluster of two one-CPU nodes (``ray.cluster_utils.Cluster``, no dashboard), then
``adaserve serve --ray`` on it and a single-process ``adaserve serve`` beside it (separate data
directories, default settings: ``fsync always``), and measures on both, in turn:

1. one model fed one ``/stream`` (libsvm text, ``--rows`` rows of ``--nnz`` non-zeros): rows/s
   from the first byte sent to the summary line, median of ``--repeats``;
2. two models each fed a ``/stream`` at once: rows/s in total;
3. a six-member experiment fed one stream (parsed once, learned by the six members);
4. single-row predictions, one connection at a time: p50/p99 latency; and ``--clients``
   connections at once: requests/s; on the cluster also of a model with one read replica (its
   rounds alternate with the model without, ``--rounds`` each, medians).

Writes ``REPORT_CLUSTER.md`` to ``--out`` (default ``loadtest/``) and ``bench_cluster.json`` there
too, or to ``loadtest/out/`` (git-ignored) by default.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
INSIDE = "ADASERVE_BENCH_CLUSTER_INSIDE"
HASH_BITS = 20
TIMEOUT = 600
WARM_UP = b"1 1:1 2:0.5\n0 3:1\n"


def make_text(rows: int, nnz: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=1 << 12)
    lines = []
    for _ in range(rows):
        indices = np.unique(rng.integers(0, 1 << HASH_BITS, size=nnz))
        values = rng.normal(size=indices.size)
        margin = float(weights[indices % weights.size] @ values) / np.sqrt(nnz)
        label = int(rng.random() < 1 / (1 + np.exp(-margin)))
        pairs = zip(indices, values, strict=True)
        lines.append(f"{label} " + " ".join(f"{i}:{v:.4f}" for i, v in pairs))
    return ("\n".join(lines) + "\n").encode()


def start(flags: list[str], data_dir: Path, port: int) -> subprocess.Popen:
    log = open(data_dir.parent / f"server-{port}.log", "wb")  # noqa: SIM115  # the server's life
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--data-dir",
         str(data_dir), *flags], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"the server exited; see {log.name}")
        time.sleep(0.5)
    raise SystemExit("the server did not get ready")


def resident_bytes(pid: int) -> int:
    """A process's resident memory (``VmRSS``), for a model host's process overhead."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for process {pid}")


def at_once(work: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(work)

    def run(i: int) -> None:
        results[i] = work[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


class Target:
    def __init__(self, label: str, url: str) -> None:
        self.label, self.url = label, url
        self.client = httpx.Client(base_url=url, timeout=TIMEOUT)
        self.made = 0

    def model(self, optimizer: str = "adagrad", read_replicas: int = 0) -> str:
        self.made += 1
        name = f"m{self.made}"
        config = {"name": name, "hash_bits": HASH_BITS, "optimizer": optimizer}
        if read_replicas:
            config["read_replicas"] = read_replicas
        response = self.client.post("/v1/models", json=config)
        assert response.status_code == 201, response.text
        self.stream(f"/v1/models/{name}/stream", WARM_UP)  # its first batch: not measured
        return name

    def stream(self, path: str, text: bytes) -> float:
        """Seconds from the first byte sent to the summary line."""
        began = time.perf_counter()
        response = httpx.post(
            f"{self.url}{path}", content=text, headers={"Content-Type": "text/x-libsvm"},
            timeout=TIMEOUT,
        )  # fmt: skip
        elapsed = time.perf_counter() - began
        summary = json.loads(response.text.strip().splitlines()[-1])
        assert summary["error"] is None, summary
        return elapsed


def measure(
    target: Target, texts: list[bytes], args: argparse.Namespace, replicas: bool = False
) -> dict[str, Any]:
    rows = args.rows
    one = target.model()
    single = [
        rows / target.stream(f"/v1/models/{one}/stream", texts[i % len(texts)])
        for i in range(args.repeats)
    ]
    pair = [target.model(), target.model()]
    two = []
    for repeat in range(args.repeats):
        began = time.perf_counter()
        texts_now = [texts[(repeat + i) % len(texts)] for i in range(2)]
        at_once(
            [
                lambda m=m, text=text: target.stream(f"/v1/models/{m}/stream", text)
                for m, text in zip(pair, texts_now, strict=True)
            ]
        )
        two.append(2 * rows / (time.perf_counter() - began))
    optimizers = ["adagrad", "sgd", "adam", "ftrl", "rmsprop", "nadam"]
    experiment = {"name": "bench", "hash_bits": HASH_BITS,
                  "models": [{"optimizer": o} for o in optimizers]}  # fmt: skip
    assert target.client.post("/v1/experiments", json=experiment).status_code == 201
    target.stream("/v1/experiments/bench/stream", WARM_UP)  # every member's first batch
    six = [
        rows / target.stream("/v1/experiments/bench/stream", texts[i % len(texts)])
        for i in range(args.repeats)
    ]
    body = {"indptr": [0, 3], "indices": [1, 77, 4242], "values": [1.0, 0.5, -2.0]}
    with httpx.Client(base_url=target.url, timeout=TIMEOUT) as client:
        for _ in range(50):  # warm: compiled paths, connections
            client.post(f"/v1/models/{one}/predict", json=body)
        latencies = []
        for _ in range(args.predicts):
            began = time.perf_counter()
            assert client.post(f"/v1/models/{one}/predict", json=body).status_code == 200
            latencies.append(time.perf_counter() - began)

    sent: dict[str, int] = {}  # requests answered, by model

    def requests_per_second(name: str) -> float:
        """``--clients`` connections predicting for ``--seconds``, each in a closed loop."""

        def closed_loop() -> int:
            done = 0
            with httpx.Client(base_url=target.url, timeout=TIMEOUT) as client:
                end = time.perf_counter() + args.seconds
                while time.perf_counter() < end:
                    assert client.post(f"/v1/models/{name}/predict", json=body).status_code == 200
                    done += 1
            return done

        began = time.perf_counter()
        done = sum(at_once([closed_loop] * args.clients))
        sent[name] = sent.get(name, 0) + done
        return done / (time.perf_counter() - began)

    ms = np.array(latencies) * 1000
    measured = {
        "one_stream_rows_s": statistics.median(single),
        "two_streams_rows_s": statistics.median(two),
        "experiment6_rows_s": statistics.median(six),
        "predict_p50_ms": float(np.percentile(ms, 50)),
        "predict_p99_ms": float(np.percentile(ms, 99)),
    }
    if not replicas:
        measured["predict_rps"] = statistics.median(
            requests_per_second(one) for _ in range(args.rounds)
        )
        return measured
    copied = target.model(read_replicas=1)  # its state as large as the other's
    target.stream(f"/v1/models/{copied}/stream", texts[0])
    replica = until_replica_caught_up(target, copied)
    without, with_one = [], []
    for _ in range(args.rounds):  # alternated: both see the same tenants' load
        without.append(requests_per_second(one))
        with_one.append(requests_per_second(copied))
    served = until_replica_caught_up(target, copied)["predictions"] - replica["predictions"]
    measured |= {
        "predict_rps": statistics.median(without),
        "predict_rps_1_replica": statistics.median(with_one),
        "predict_rps_rounds": {"0": without, "1": with_one},
        "replica_share": served / sent[copied],
        "replica_node_differs": replica["node"] != cluster(target)["hosts"][copied]["node"],
    }
    return measured


def cluster(target: Target) -> dict[str, Any]:
    return target.client.get("/v1/cluster").json()


def until_replica_caught_up(target: Target, name: str) -> dict[str, Any]:
    """The model's one replica, once it is placed, loaded, and holds every row acknowledged."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        replicas = cluster(target)["replicas"].get(name)
        if replicas and replicas[0]["state"] == "ready" and replicas[0]["rows_behind"] == 0:
            return replicas[0]
        time.sleep(0.5)
    raise SystemExit(f"the replica of {name} did not catch up: {cluster(target)['replicas']}")


def inside(args: argparse.Namespace) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from optim import OnlineLogisticRegression

    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    texts = [make_text(args.rows, args.nnz, seed) for seed in range(3)]
    local = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={**local, "include_dashboard": False})
    servers: list[subprocess.Popen] = []
    try:
        cluster.add_node(**local)
        cluster.wait_for_nodes()
        (work / "single").mkdir()
        (work / "ray").mkdir()
        servers.append(start([], work / "single", 18181))
        servers.append(start(["--ray", cluster.address], work / "ray", 18182))
        results = {}
        for label, port in (("single process", 18181), ("ray, 2 nodes", 18182)):
            target = Target(label, f"http://127.0.0.1:{port}")
            results[label] = measure(target, texts, args, replicas=port == 18182)
            print(label, results[label], flush=True)
        cluster_view = httpx.get("http://127.0.0.1:18182/v1/cluster", timeout=60).json()
        hosts = cluster_view["hosts"].values()
        host_rss = [resident_bytes(host["pid"]) for host in hosts if host["pid"]]
    finally:
        for server in servers:
            server.terminate()
            server.wait(120)
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    state = OnlineLogisticRegression.memory_bytes_for("adagrad", 1 << HASH_BITS, "float64", 10_000)
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_before": load_before, "load_after": os.getloadavg(),
        "rows": args.rows, "nnz": args.nnz, "repeats": args.repeats,
        "predicts": args.predicts, "clients": args.clients, "seconds": args.seconds,
        "rounds": args.rounds,
        "adagrad_2_20_bytes": state, "results": results, "cluster": cluster_view,
        "host_rss_bytes": host_rss,
    }  # fmt: skip
    raw = args.out if args.out != ROOT / "loadtest" else ROOT / "loadtest" / "out"
    for folder in (args.out, raw):
        folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError, ValueError, KeyError):  # the run before, to show the spread
        before = json.loads((raw / "bench_cluster.json").read_text())
        report["previous"] = {"when": before["when"], "results": before["results"]}
    (raw / "bench_cluster.json").write_text(json.dumps(report, indent=1))
    (args.out / "REPORT_CLUSTER.md").write_text(render(report))


def render(report: dict[str, Any]) -> str:
    single, ray_ = report["results"]["single process"], report["results"]["ray, 2 nodes"]
    rows = [
        ("(a) two models, a stream each at once: rows/s in total", "two_streams_rows_s", "{:,.0f}"),
        ("(b) six-member experiment, one stream: rows/s", "experiment6_rows_s", "{:,.0f}"),
        ("one model, one stream: rows/s", "one_stream_rows_s", "{:,.0f}"),
        ("single-row predict p50, ms (one connection)", "predict_p50_ms", "{:.2f}"),
        ("single-row predict p99, ms (one connection)", "predict_p99_ms", "{:.2f}"),
        (f"(c) predict requests/s, {report['clients']} connections, 0 read replicas",
         "predict_rps", "{:,.0f}"),
    ]  # fmt: skip
    previous = report.get("previous")
    before = previous["results"] if previous else None

    def ratio_before(key: str) -> str:
        if before is None:
            return ""
        return f" {before['ray, 2 nodes'][key] / before['single process'][key]:.2f} |"

    table = "\n".join(
        f"| {label} | {fmt.format(single[key])} | {fmt.format(ray_[key])} | "
        f"{ray_[key] / single[key]:.2f} |{ratio_before(key)}"
        for label, key, fmt in rows
    )
    header = "| measure | single process | Ray (2 nodes) | Ray / single |"
    rule = "|---|---|---|---|"
    if previous:
        header += f" Ray / single, the run before ({previous['when']}) |"
        rule += "---|"
    two = ray_["two_streams_rows_s"] / single["two_streams_rows_s"]
    rss = report.get("host_rss_bytes")
    host_rss = (
        f"{statistics.median(rss) / 2**20:,.0f} MiB resident, median of {len(rss)} hosts; "
        "shared libraries counted in each"
        if rss
        else "its resident size was not measured in this run"
    )
    per_host = "measure it before sizing nodes."
    if rss:
        each = report["adagrad_2_20_bytes"] + statistics.median(rss)
        per_host = (
            f"a 64 GiB node holds about {(64 << 30) // each} such models, not "
            f"{(64 << 30) // report['adagrad_2_20_bytes']}; many small models want several "
            "models per actor, which this version does not do."
        )
    replica_line = (
        "(c) with 1 read replica: not measured in this run."
        if "predict_rps_1_replica" not in ray_
        else f"""(c) with 1 read replica (the cluster only: the single process holds one copy
and refuses `read_replicas`): **{ray_["predict_rps_1_replica"]:,.0f} requests/s against
{ray_["predict_rps"]:,.0f} without, {ray_["predict_rps_1_replica"] / ray_["predict_rps"]:.2f}x**
(medians of {report["rounds"]} alternated rounds of {report["seconds"]} s:
{", ".join(f"{r:,.0f}" for r in ray_["predict_rps_rounds"]["1"])} with,
{", ".join(f"{r:,.0f}" for r in ray_["predict_rps_rounds"]["0"])} without). The replica, on
{"the other node than its owner" if ray_["replica_node_differs"] else "its owner's node"}, answered
{ray_["replica_share"]:.0%} of the predictions of the model it copies (the owner the rest)."""
    )
    replica_verdict = "the case with a replica was not measured."
    if "predict_rps_1_replica" in ray_:
        rounds = ray_["predict_rps_rounds"]
        each = ", ".join(f"{w / wo:.2f}" for w, wo in zip(rounds["1"], rounds["0"], strict=True))
        replica_verdict = (
            f"the model with one replica answered "
            f"{ray_['predict_rps_1_replica'] / ray_['predict_rps']:.2f}x the requests/s of the "
            f"one without (round by round: {each}; the other tenants' load moves figures by "
            "tens of percent between rounds), with both sharing the two cores the ingress and "
            "the proxy need: no gain to expect, and none measured."
        )
    budget = 4 << 30
    per_node = budget // report["adagrad_2_20_bytes"]
    per_node_rows = ray_["two_streams_rows_s"] / 2
    return f"""# adaserve on a Ray cluster against the single process (`loadtest/bench_cluster.py`)

Run {report["when"]} on {report["machine"]}, shared with other jobs: load average
{report["load_before"][0]:.2f} before, {report["load_after"][0]:.2f} after, on 2 cores: every
figure is what the other tenants left, and a second run would differ by tens of percent. One
run, both servers in it, loopback only, inside a network namespace; the cluster is
`ray.cluster_utils.Cluster` with two one-CPU nodes **on the same two cores**, so the cluster
cannot add cores here: this measures the Ray path's overhead, not its scaling. Streams:
{report["rows"]:,} libsvm rows of {report["nnz"]} non-zeros, `hash_bits` {HASH_BITS}, adagrad
(the experiment: adagrad, sgd, adam, ftrl, rmsprop, nadam), `fsync always`, median of
{report["repeats"]}, each model fed a two-row stream first (not measured); predictions:
{report["predicts"]} single-row requests one at a time, then {report["clients"]} connections for
{report["seconds"]} s.

{header}
{rule}
{table}

{replica_line}

## Reading the numbers

- (a) Two models at once: {two:.2f}x. On one machine the two actors, the ingress and Serve's
  proxy share the same two cores the single process uses (whose writer threads learn both models
  at once too): nothing is gained here, and what is lost is the hops below. The spread between
  runs is the other tenants' load.
- (b) The experiment: {ray_["experiment6_rows_s"] / single["experiment6_rows_s"]:.2f}x. Each batch
  goes to six actors (six copies through Ray's object store, six log writes on the shared
  folder) and six processes compete for two cores; the single process learns the six members in
  its writer threads, sharing one parsed batch in memory. Members on different machines would
  learn in parallel; on one machine the copies are pure cost.
- One stream: {ray_["one_stream_rows_s"] / single["one_stream_rows_s"]:.2f}x; predictions: p50
  {ray_["predict_p50_ms"]:.1f} ms against {single["predict_p50_ms"]:.2f} ms and
  {ray_["predict_rps"] / single["predict_rps"]:.2f}x the requests/s: the Ray path's fixed cost per
  request (below) dwarfs a prediction's microseconds.

## Where the time goes on the Ray path

Each stream batch ({"10,000"} rows at most) is parsed in the ingress, then sent to the model's
actor (Ray's object store for a large batch), learned and logged there, and its result sent
back: two hops between processes a batch, and the ingress, Serve's proxy and the actors compete
for the same two cores here. A single-row prediction goes through Serve's HTTP proxy, the
ingress replica (FastAPI) and one actor call carrying the route's function (cloudpickled),
instead of being answered on the event loop that parsed it: that is the p50 difference above.

## What a cluster of N machines would carry

- Models per node by memory: an adagrad model of `hash_bits` {HASH_BITS} holds
  {report["adagrad_2_20_bytes"] / 2**20:,.1f} MiB of state; with the default
  `ADASERVE_MEMORY_BUDGET_BYTES` (4 GiB, per node on a cluster) a node holds {per_node} of them
  by state alone; each model also has its actor's own process ({host_rss}), which the budget
  does not count: {per_host}
- Rows/s per node: {per_node_rows:,.0f} rows/s per one-CPU node here ((a) over two nodes, both
  sharing two busy cores). With cores of its own a node learns about one stream per core at the
  rate one actor reaches (here {ray_["one_stream_rows_s"]:,.0f} rows/s for one model on the Ray
  path), so N machines of C cores carry about N x C streams at that rate, until the ingress
  below saturates.
- The ingress ceiling: one Serve replica parses every stream and sends each batch to its actor.
  A rough measure of it is the single process's one-stream rate ({single["one_stream_rows_s"]:,.0f}
  rows/s here, parsing and learning on one machine; parsing alone is faster, sending batches
  slower): past about {single["one_stream_rows_s"] / max(per_node_rows, 1):.1f} nodes' worth of
  the per-node rate above, expect streams to wait for the ingress, not the nodes.
- Where it stops scaling: (1) the ingress (above): scaling it means more ingress replicas,
  which this version does not run (the registry lives in the one replica); (2) the shared
  volume: every acknowledged batch is an fsync'd append to the model's log on the shared
  `--data-dir`, so the volume's synchronous write rate (fsyncs/s, and bytes/s at ~12 bytes a
  non-zero) bounds acknowledged batches/s across the cluster; snapshots add a model's state size
  every `snapshot_every_rows` rows.
- Reads (c): a prediction goes to the owner or its read replica in turn, so a replica takes
  over the scoring (microseconds for a row) and nothing else: the request still crosses Serve's
  proxy, the one ingress replica and one actor call (the p50 of {ray_["predict_p50_ms"]:.1f} ms
  above against {single["predict_p50_ms"]:.2f} ms in one process), which is where the time goes.
  Here {replica_verdict} On N machines the same holds while one ingress carries every request:
  a replica on a node of its own raises a model's predictions/s only where its owner, not the
  ingress, is what they wait for: rows many per request (scoring grows with them), or an owner
  busy learning a heavy stream (a prediction waits for the batch being learned; its replica
  learns the log's records one at a time, elsewhere). Neither case is measured here. Beyond
  that, predictions scale with more ingress replicas, which this version does not run.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--nnz", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--predicts", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="closed-loop predict rounds")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest")
    args = parser.parse_args()
    if os.environ.get(INSIDE):
        inside(args)
        return
    lo_up = "ip link set lo up" if shutil.which("ip") else "true"
    command = f"{lo_up} && exec {sys.executable} {Path(__file__).resolve()} " + " ".join(
        f"'{a}'" for a in sys.argv[1:]
    )
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", command], env={**os.environ, INSIDE: "1"}, cwd=ROOT
    )
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
