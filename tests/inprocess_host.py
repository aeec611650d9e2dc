"""Tier (a): the real ComfyUI host in this process, no server.

It loads the host's built-in nodes and this pack exactly as main.py does, validates API-format prompts with the
host's validator and runs them with the host's PromptExecutor. A stand-in PromptServer records every event the
host and the pack send to the front end, so tests can assert on progress and custom events.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import host_env

PACK_MODULE_PREFIX = "custom_nodes."


class RecordingServer:
    """Stands in for server.PromptServer.instance: what execution and nodes use of it, with events recorded."""

    def __init__(self):
        from aiohttp import web

        self.events: list[tuple[str, object]] = []
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.routes = web.RouteTableDef()
        self.supports = set()
        try:  # newer hosts: comfy_api registers node replacements with the server (absent in 0.3.75)
            from app.node_replace_manager import NodeReplaceManager
        except ImportError:
            pass
        else:
            self.node_replace_manager = NodeReplaceManager()

    def send_sync(self, event, data, sid=None):
        self.events.append((event, data))

    def queue_updated(self):
        pass

    def add_on_prompt_handler(self, handler):
        pass


@dataclass
class RunResult:
    prompt_id: str
    success: bool
    events: list
    outputs: dict = field(default_factory=dict)  # node id -> the node's output tuple (from the host's cache)
    ui: dict = field(default_factory=dict)

    def event_names(self):
        return [e for e, _ in self.events]

    def error(self):
        return next((d for e, d in self.events if e == "execution_error"), None)

    def interrupted(self):
        return any(e == "execution_interrupted" for e, _ in self.events)


class InProcessHost:
    """Owns a configured host: call `start()` once per process (the host's registries are global)."""

    def __init__(self, base_dir: Path, custom_nodes_dir: Path, models_dir: Path):
        self.base_dir, self.custom_nodes_dir, self.models_dir = base_dir, custom_nodes_dir, models_dir
        self.server = None
        self.log_records: list[logging.LogRecord] = []

    def start(self, pack_name: str, cpu: bool = True):
        host_env.import_comfy_cpu(str(self.base_dir), cpu=cpu)
        (self.base_dir / "custom_nodes").mkdir(parents=True, exist_ok=True)
        import folder_paths

        folder_paths.add_model_folder_path("custom_nodes", str(self.custom_nodes_dir))
        for sub in host_env.host_script.MODEL_FOLDERS:
            (self.models_dir / sub).mkdir(parents=True, exist_ok=True)
            folder_paths.add_model_folder_path(sub, str(self.models_dir / sub), is_default=True)
        import sys

        stray = sys.modules.get("utils")
        if stray is not None and not hasattr(stray, "__path__"):
            raise RuntimeError(
                f"a module named 'utils' ({getattr(stray, '__file__', stray)}) was imported before the "
                "host; ComfyUI needs its own utils package"
            )
        # isort: off
        import utils.extra_config  # noqa: F401  (must precede `nodes`, else `utils` resolves to comfy/utils.py)
        import server
        # isort: on

        self.server = RecordingServer()
        server.PromptServer.instance = self.server
        handler = _ListHandler(self.log_records)
        logging.getLogger().addHandler(handler)
        import nodes

        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
        logging.getLogger().removeHandler(handler)
        self._install_progress_hook()
        self.pack_nodes = {
            k
            for k, v in nodes.NODE_CLASS_MAPPINGS.items()
            if getattr(v, "RELATIVE_PYTHON_MODULE", "") == PACK_MODULE_PREFIX + pack_name
        }
        return self

    def _install_progress_hook(self):
        """The same hook main.py installs: ProgressBar updates reach the front end as 'progress' events."""
        import comfy.model_management
        import comfy.utils
        from comfy_execution.progress import get_progress_state
        from comfy_execution.utils import get_executing_context

        srv = self.server

        def hook(value, total, preview_image, prompt_id=None, node_id=None):
            ctx = get_executing_context()
            prompt_id = prompt_id or (ctx.prompt_id if ctx else srv.last_prompt_id)
            node_id = node_id or (ctx.node_id if ctx else srv.last_node_id)
            comfy.model_management.throw_exception_if_processing_interrupted()
            get_progress_state().update_progress(node_id, value, total, preview_image)
            srv.send_sync("progress", {"value": value, "max": total, "prompt_id": prompt_id, "node": node_id})
            if preview_image is not None:
                srv.send_sync("preview", {"node": node_id, "image": preview_image})

        comfy.utils.set_progress_bar_global_hook(hook)

    def validate(self, prompt: dict):
        """The host's own validation: (ok, error, outputs_to_run, node_errors)."""
        import execution

        return asyncio.run(execution.validate_prompt(str(uuid.uuid4()), prompt, None))

    def executor(self, cache: str = "none"):
        import execution

        ct = {"none": execution.CacheType.NONE, "classic": execution.CacheType.CLASSIC}[cache]
        # main.py's keys on every host version (0.3.75 reads lru/ram, newer hosts also ram_inactive)
        return execution.PromptExecutor(self.server, cache_type=ct, cache_args={"lru": 0, "ram": 0, "ram_inactive": 0})

    def run(self, prompt: dict, executor=None, on_event=None, preview_method: str | None = None) -> RunResult:
        """Validate then execute one prompt; raises AssertionError with the host's message if invalid.

        preview_method (e.g. "latent2rgb") is the prompt's latent preview method, as --preview-method or the front
        end's setting gives it: newer hosts reset it per prompt from the prompt's extra data, older ones read the
        process-wide argument, so both are set for this prompt."""
        ok, err, outputs, node_errors = self.validate(prompt)
        if not ok:
            raise AssertionError(f"prompt invalid: {err} {node_errors}")
        ex = executor or self.executor("classic")
        self.server.events = []
        prompt_id = str(uuid.uuid4())
        extra = {"client_id": "tests"}
        from comfy.cli_args import LatentPreviewMethod, args

        old_method = args.preview_method
        if preview_method is not None:
            extra["preview_method"] = preview_method
            args.preview_method = LatentPreviewMethod(preview_method)
        try:
            ex.execute(prompt, prompt_id, extra, outputs)
        finally:
            args.preview_method = old_method
        result = RunResult(prompt_id, ex.success, list(self.server.events), ui=ex.history_result.get("outputs", {}))
        for node_id in prompt:
            entry = ex.caches.outputs.get(node_id)
            if inspect.isawaitable(entry):  # newer hosts' caches are async
                entry = asyncio.run(entry)
            if entry is not None:
                result.outputs[node_id] = getattr(entry, "outputs", entry)
        return result


class _ListHandler(logging.Handler):
    def __init__(self, sink):
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record):
        self.sink.append(record)
