"""HTTP routes the front-end extension reads: the threshold presets (one source of truth, dsa_core.policies); for a
sampler's current widgets and loaders, the expected cost of its run (dsa_core.expected_cost, the same function the
node's report uses), read from the calibration tables in the files' metadata (headers only); the live node's
routes (nodes/live_session.py)."""

from __future__ import annotations

import os

from aiohttp import web

from ..dsa_core import schedules
from ..dsa_core.calibration import META_HEAD, META_HEURISTIC, table_from_metadata
from ..dsa_core.expected_cost import expected_cost
from ..dsa_core.policies import THRESHOLD_PRESETS
from . import live_session

_META_CACHE: dict = {}  # (path, mtime, size) -> metadata


def file_metadata(path: str | None) -> dict:
    """The safetensors metadata of the file at ``path`` ({} when there is no such file)."""
    if not path or not os.path.isfile(path):
        return {}
    from safetensors import safe_open

    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _META_CACHE:
        with safe_open(path, framework="pt") as f:
            _META_CACHE[key] = dict(f.metadata() or {})
    return _META_CACHE[key]


def generator_file(name) -> str | None:
    """Where DSA Model Loader finds ``name`` (the host's diffusion models, then the pack's toy model), or None."""
    from . import model_folders

    try:
        return model_folders.generator_path(name) if name else None
    except FileNotFoundError:
        return None


def expected_for(q: dict) -> dict:
    """``q``: the node's policy widgets and where its model and head come from: 'generator' (a DSA Model Loader's
    file), 'head' (its head widget, or a DSA Head Loader's file), 'has_head' (the head input is linked)."""
    import folder_paths

    from . import model_folders
    from .loader_nodes import HEAD_AUTO, HEAD_NONE

    gen_meta = file_metadata(generator_file(q.get("generator")))
    head = q.get("head")
    if head == HEAD_AUTO:
        head_meta = gen_meta
    elif head in (None, "", HEAD_NONE):
        head_meta = {}
    else:
        head_meta = file_metadata(folder_paths.get_full_path(model_folders.HEADS, head))
    schedule = q.get("schedule") or "self_forcing"
    base = 4 if schedule == "model" else schedules.build_ladder(schedule).base_steps
    return expected_cost(
        str(q.get("policy", "confidence")),
        str(q.get("threshold_preset", "custom")),
        float(q.get("threshold", 0.5)),
        mean_steps=float(q.get("mean_steps") or 2.5),
        max_steps=int(q.get("max_steps", 6)),
        base_steps=base,
        head_table=table_from_metadata(head_meta, META_HEAD),
        heuristic_table=table_from_metadata(gen_meta, META_HEURISTIC),
        has_head=bool(q.get("has_head", True)),
    )


def register(server) -> None:
    routes = getattr(server, "routes", None)
    if routes is None:
        return

    @routes.get("/dsa/presets")
    async def presets(_request):
        return web.json_response(THRESHOLD_PRESETS)

    live_session.register_routes(routes, web)

    @routes.post("/dsa/expected")
    async def expected(request):
        try:
            return web.json_response(expected_for(await request.json()))
        except Exception as e:  # a half-edited graph: say why, the GUI shows no estimate
            return web.json_response({"error": str(e)}, status=400)


def register_with_host() -> None:
    try:
        from server import PromptServer
    except ImportError:
        return
    if getattr(PromptServer, "instance", None) is not None:
        register(PromptServer.instance)
