"""``adaserve serve --ray ADDRESS``: the app as a Ray Serve application on an existing cluster.

One ingress replica (a deployment wrapping :func:`service.app.create_app`, built in the
replica) answers HTTP on ``--host``/``--port`` through Serve's proxy on the head node; the app's
registry is a :class:`~service.cluster.registry.RayRegistry`, each model owned by an actor. The
command returns on SIGTERM/SIGINT after deleting the application: its lifespan has every host
snapshot its model first. Serve itself (its controller and proxy) stays up for the cluster's
other applications.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import ray
from ray import serve

import service
from service.settings import Settings

log = logging.getLogger("adaserve")
APPLICATION = "adaserve"
# Requests one ingress replica takes at once (Serve's default of 5 would queue concurrent
# streams and predictions in the proxy).
MAX_ONGOING_REQUESTS = 10_000


def deploy(settings: Settings) -> None:
    """Deploy the app on the cluster ``ray.init`` connected to (returns once it serves)."""

    def build():  # type: ignore[no-untyped-def]  # in the replica: the app is not pickled
        from service.app import create_app

        return create_app(settings)

    # The replica and the model hosts import this package from where this process did (an
    # editable install or a checkout on a volume every node shares).
    source = str(Path(service.__file__).resolve().parent.parent)
    ingress = serve.deployment(
        name="ingress",
        num_replicas=1,
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": {"PYTHONPATH": source}}},
    )(serve.ingress(build)())
    serve.start(
        proxy_location="HeadOnly", http_options={"host": settings.host, "port": settings.port}
    )
    serve.run(ingress.bind(), name=APPLICATION, route_prefix="/", blocking=False)


def run(settings: Settings) -> int:
    """Deploy, serve until SIGTERM/SIGINT, then delete the application (snapshots first)."""
    settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
    ray.init(address=settings.ray_address, namespace="adaserve", log_to_driver=False)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        deploy(settings)
        log.info("serving on the Ray cluster at %s", settings.ray_address)
        stop.wait()
    finally:
        log.info("deleting the application: every model's host snapshots it first")
        serve.delete(APPLICATION)
        ray.shutdown()
    return 0
