"""``adaserve``: the command line (``adaserve serve``; ``python -m service`` too)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from service.settings import Settings


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

    overrides = {
        k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None
    }
    settings = Settings(**overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("adaserve")
    log.info("listening on http://%s:%d", settings.host, settings.port)
    log.info("keeping data in %s", settings.data_dir.resolve())
    server = GracefulServer(
        uvicorn.Config(create_app(settings), host=settings.host, port=settings.port)
    )
    server.run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adaserve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the REST service (embedded: a local data dir)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--data-dir", type=Path, help="data directory (default ./adaserve-data)")
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
