"""HTTP routes the front-end extension reads: the threshold presets (one source of truth, dsa_core.policies); the
live node's routes (nodes/live_session.py)."""

from __future__ import annotations

from aiohttp import web

from ..dsa_core.policies import THRESHOLD_PRESETS
from . import live_session


def register(server) -> None:
    routes = getattr(server, "routes", None)
    if routes is None:
        return

    @routes.get("/dsa/presets")
    async def presets(_request):
        return web.json_response(THRESHOLD_PRESETS)

    live_session.register_routes(routes, web)


def register_with_host() -> None:
    try:
        from server import PromptServer
    except ImportError:
        return
    if getattr(PromptServer, "instance", None) is not None:
        register(PromptServer.instance)
