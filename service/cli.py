"""``adaserve``: the command line (``python -m service`` too).

``adaserve serve`` runs the REST service; ``adaserve train`` learns a model file from text files
in one pass (progressive validation, as ``vw -d``) and ``adaserve predict`` scores a file with
it (both in :mod:`adaserve_cli.train`, with their options); ``adaserve compare`` is in
:mod:`adaserve_cli.compare`. ``adaserve repair DATA_DIR MODEL`` makes a model whose log is
damaged start again, keeping the rows before the damage.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from adaserve_cli import compare, train

# The service's modules (FastAPI, pydantic, the storage) are imported by the commands that use
# them: `adaserve train` starts without them (its start-up is part of what a user waits for).


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """SIGTERM/SIGINT: stop accepting, finish in-flight requests, snapshot, exit 0.

        uvicorn re-raises the signal after its graceful shutdown (ending the process with -15);
        the shutdown here is complete and intended, so the process exits 0.
        """

        def capture_signals(self):  # type: ignore[no-untyped-def]
            captured = super().capture_signals()

            @contextlib.contextmanager
            def without_reraise():  # type: ignore[no-untyped-def]
                with captured:
                    yield
                    self._captured_signals.clear()

            return without_reraise()

    from service.app import create_app
    from service.auth import parse_tokens
    from service.settings import Settings
    from service.websafety import is_loopback, parse_origins

    overrides = {
        k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None
    }
    settings = Settings(**overrides)
    log = logging.getLogger("adaserve")
    try:
        tokens = parse_tokens(settings.tokens, settings.tokens_file)
    except (OSError, ValueError) as exc:
        log.error("tokens: %s", exc)
        return 2
    try:
        origins = parse_origins(settings.allowed_origins)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if origins:
        log.info("web pages of these origins may call the API: %s", ", ".join(sorted(origins)))
    if tokens:
        roles = sorted(set(tokens.values()))
        log.info("auth: %d token(s) with roles %s", len(tokens), ", ".join(roles))
    elif not is_loopback(settings.host) and not settings.insecure:
        log.error(
            "refusing to bind %s without tokens: anyone who can reach it could change models. "
            "Configure ADASERVE_TOKENS or --tokens-file, or pass --insecure.",
            settings.host,
        )
        return 2
    else:
        log.warning(
            "auth: no tokens configured, the API is open to whoever reaches %s", settings.host
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log.info("listening on http://%s:%d", settings.host, settings.port)
    log.info("keeping data in %s (fsync %s)", settings.data_dir.resolve(), settings.fsync)
    if settings.ray_address is not None:
        from service.cluster.serve import run

        return run(settings)
    server = GracefulServer(
        uvicorn.Config(create_app(settings), host=settings.host, port=settings.port)
    )
    server.run()
    return 0


def _repair(args: argparse.Namespace) -> int:
    from service.storage import ModelUnrecoverable, repair_model

    name = args.model
    directory = args.data_dir / "models" / name
    if not directory.is_dir():
        print(f"adaserve repair: no model {name!r} in {args.data_dir}", file=sys.stderr)
        return 2
    try:
        repaired = repair_model(directory)
    except ModelUnrecoverable as exc:
        print(f"adaserve repair: {name}: {exc.reason}; nothing was changed", file=sys.stderr)
        return 1
    except OSError as exc:  # each step leaves files that recover, or repair again, the same
        print(f"adaserve repair: {name}: {exc}; run it again once that is fixed", file=sys.stderr)
        return 1
    if repaired.damage is None:
        print(f"{name}: nothing to repair, it recovers as it is (step {repaired.kept_step})")
        return 0
    replayed = repaired.kept_step - repaired.snapshot_step
    end = repaired.kept_step + repaired.lost_rows
    print(
        f"{name}: damage: {repaired.damage}\n"
        f"kept: step {repaired.kept_step} (snapshot-{repaired.snapshot_step}.npz + {replayed} "
        f"logged rows before the damage), written as snapshot-{repaired.kept_step}.npz\n"
        f"lost: {repaired.lost_rows} rows (steps {repaired.kept_step} to {end}), in "
        f"{repaired.lost_records} readable records from the damage on and any unreadable one\n"
        f"moved aside: {', '.join(repaired.moved)}\n"
        f"the model starts at step {repaired.kept_step}"
    )
    return 0


def _warm(args: argparse.Namespace) -> int:
    from optim._cache import COMPILED_DIRECTORY
    from service.app import warm_kernels

    log = logging.getLogger("adaserve")
    log.info("compiling into %s (and numba's cache)", COMPILED_DIRECTORY)
    warmup = warm_kernels()
    log.info("%d piece(s) warm; %d failed", len(warmup.seconds), len(warmup.failed))
    return 1 if warmup.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adaserve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the REST service (embedded: a local data dir)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--data-dir", type=Path, help="data directory (default ./adaserve-data)")
    serve.add_argument("--tokens-file", type=Path, help="API tokens: one 'role token' per line")
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow binding a non-loopback address without tokens",
    )
    serve.add_argument(
        "--allowed-origins",
        help="comma-separated origins (scheme://host[:port]) whose web pages may call the API",
    )
    serve.add_argument(
        "--fsync",
        choices=["always", "interval", "off"],
        help="log durability: always (default), interval, off (benchmarks only)",
    )
    serve.add_argument(
        "--ray",
        dest="ray_address",
        metavar="ADDRESS",
        help="serve on this Ray cluster (host:port of its head, or 'auto' as in ray.init), each "
        "model owned by an actor; --data-dir must be reachable by every node (needs the [ray] "
        "extra)",
    )
    serve.set_defaults(run=_serve)
    repair = commands.add_parser(
        "repair",
        help="make a model whose log is damaged start again (with the service stopped): keep "
        "the rows before the damage, move the damaged files into its damaged/ folder",
    )
    repair.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="the service's data dir")
    repair.add_argument("model", metavar="MODEL", help="the model's name")
    repair.set_defaults(run=_repair)

    warm = commands.add_parser(
        "warm", help="compile all the numba code into the caches now, so servers start warm"
    )
    warm.set_defaults(run=_warm)
    train.add_commands(commands)  # train, predict
    compare.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
