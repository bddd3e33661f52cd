"""The floor of a Python gateway's CPU: the least relay that does the gateway's job on the same stack.

    .venv/bin/python bench/relay_floor.py --port 8100 --upstream http://127.0.0.1:8001

A raw ASGI app on uvicorn (uvloop, httptools) with one aiohttp session to the engine, as `empathy serve`
has: it reads the request, asks for the usage event, posts the JSON and relays the stream, adding an
`empathy` field to the first event. Nothing else: no validation, routing, store, metrics, logs, auth or
error mapping. `bench/proxy_cpu.py --floor` measures it beside the gateway, so the gateway's CPU can be read
against what any relay of this stack costs on this machine. Not a product: a yardstick.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import aiohttp
import uvicorn
from starlette.types import Message, Receive, Scope, Send

_JSON = {"content-type": "application/json"}


class Relay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["method"] == "GET":  # /health
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
        else:
            await self._relay(scope, await _body(receive), send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while (await receive())["type"] == "lifespan.startup":
            connector = aiohttp.TCPConnector(limit=1024, limit_per_host=0, keepalive_timeout=4.0)
            self.session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                                 trust_env=False, skip_auto_headers=("User-Agent",))
            await send({"type": "lifespan.startup.complete"})
        if self.session is not None:
            await self.session.close()
        await send({"type": "lifespan.shutdown.complete"})

    async def _relay(self, scope: Scope, body: bytes, send: Send) -> None:
        assert self.session is not None
        data: dict[str, Any] = json.loads(body)
        data["stream_options"] = {"include_usage": True}
        async with self.session.post(self.upstream + scope["path"], data=json.dumps(data).encode(),
                                     headers=_JSON) as resp:
            await send({"type": "http.response.start", "status": resp.status,
                        "headers": [(b"content-type", b"text/event-stream")]})
            first = True
            async for chunk in resp.content.iter_any():
                if first and b"}\n\n" in chunk:
                    end = chunk.index(b"}\n\n")
                    chunk, first = chunk[:end] + b',"empathy":{}' + chunk[end:], False
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _body(receive: Receive) -> bytes:
    parts = []
    while True:
        message: Message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="the engine's URL")
    args = p.parse_args()
    uvicorn.run(Relay(args.upstream), host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
