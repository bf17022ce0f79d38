"""The ceiling of a FastAPI route on this machine: one ``POST /echo``, served like the service.

    python loadtest/bare_app.py --port 8090          # FastAPI under uvicorn, as the service
    python loadtest/bare_app.py --port 8091 --raw    # no framework: the load generators' ceiling

``POST /echo`` reads the body, decodes it as JSON (orjson, as ``service.batches.read_json``
does) and answers ``{"length": <body bytes>}``; ``GET /readyz`` answers 200. It is run by
``uvicorn.run(app, host=..., port=..., log_level="info")`` exactly as ``service/cli.py`` runs the
service (one worker, the same event loop and HTTP implementation, access log on), so the
difference between the two is the service's own work per request.

``--raw`` serves the same answers from a plain ``asyncio.Protocol`` (no uvicorn, no ASGI, no
JSON decoding): a server far faster than any FastAPI route, to measure what a load generator
itself can drive.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI(title="bare echo")


@app.post("/echo")
async def echo(request: Request) -> dict[str, int]:
    body = await request.body()
    orjson.loads(body)
    return {"length": len(body)}


@app.get("/readyz")
async def readyz() -> JSONResponse:
    return JSONResponse({"status": "ready"})


class RawEcho(asyncio.Protocol):
    """HTTP/1.1 keep-alive with Content-Length bodies only: ``{"length": n}`` to any request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buffer = transport, bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            i = head.find(b"\r\ncontent-length:")
            size = int(head[i + 17 :].split(b"\r\n", 1)[0]) if i >= 0 else 0
            if len(self.buffer) < end + 4 + size:
                return
            del self.buffer[: end + 4 + size]
            payload = b'{"length":%d}' % size
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(payload), payload)
            )


async def serve_raw(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(RawEcho, host, port)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--raw", action="store_true", help="plain asyncio, no framework")
    args = parser.parse_args(argv)
    if args.raw:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_raw(args.host, args.port))
        return 0
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
