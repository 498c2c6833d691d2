"""Embed regcopy in an aiohttp service: the app's session is injected and never closed by regcopy.

POST /mirror {"src": "...", "dst": "..."} copies an image and answers the JSON report.

    python examples/embed_in_aiohttp_service.py   # listens on 127.0.0.1:8080
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import ClientSession, web

import regcopy

CLIENT = web.AppKey("regcopy_client", regcopy.Client)


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    # One Client for the service's life: tokens, scheme probes and the blob ledger are shared.
    async with ClientSession() as session, regcopy.Client(session=session) as client:
        app[CLIENT] = client
        yield


async def mirror(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        result = await request.app[CLIENT].copy(body["src"], body["dst"])
    except regcopy.InvalidReference as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    except regcopy.RegcopyError as exc:
        raise web.HTTPBadGateway(text=str(exc)) from exc
    return web.json_response(result.to_json())


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/mirror", mirror)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=8080)
