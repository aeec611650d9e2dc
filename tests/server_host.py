"""Tier (b): the real ComfyUI server as a subprocess on a free loopback port, and a small client for it.

The host's exit code never says that a pack failed to import, so `start()` fails on its own when the pack's
nodes are missing from /object_info or the log says IMPORT FAILED for it (PackImportError).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import host_env

HS = host_env.host_script


class PackImportError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pack_import_problems(log_text: str, object_info: dict, pack_name: str) -> list[str]:
    """Why the host did not load the pack, or [] when it did (its nodes are listed and nothing failed)."""
    problems = []
    for line in log_text.splitlines():
        if "IMPORT FAILED" in line and pack_name in line:
            problems.append(line.strip())
    mine = [k for k, v in object_info.items() if v.get("python_module") == f"custom_nodes.{pack_name}"]
    if not mine:
        problems.append(f"no node of custom_nodes.{pack_name} in /object_info")
    return problems


class ServerHost:
    def __init__(self, workdir: Path, custom_nodes_dir: Path, pack_name: str, slim: bool = True):
        self.workdir, self.custom_nodes_dir, self.pack_name, self.slim = workdir, custom_nodes_dir, pack_name, slim
        self.base = workdir / "base"
        self.models = workdir / "models"
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 90.0, require_pack: bool = True):
        cfg = HS.write_config(self.base, self.models, self.custom_nodes_dir)
        cmd = HS.server_command(self.port, self.base, cfg, self.slim)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=host_env.comfy_dir(), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.object_info = self.get_json("/object_info")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        else:
            self.stop()
            raise TimeoutError(f"ComfyUI did not answer in {timeout}s:\n{self.log()}")
        if require_pack:
            problems = pack_import_problems(self.log(), self.object_info, self.pack_name)
            if problems:
                log = self.log()
                self.stop()
                raise PackImportError(f"{self.pack_name} did not load: {problems}\n--- server log ---\n{log}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "_log", None):
            self._log.close()

    # --- HTTP ---
    def request(self, path: str, data=None, method=None, timeout=30):
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(
            self.url + path, data=body, method=method, headers={"Content-Type": "application/json"} if body else {}
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()

    def get_json(self, path: str):
        return json.loads(self.request(path, timeout=10)[1])

    def queue(self, prompt: dict, client_id: str) -> str:
        """POST /prompt; returns prompt_id, or raises PromptRejected with the host's node errors."""
        try:
            _, body = self.request("/prompt", {"prompt": prompt, "client_id": client_id})
        except urllib.error.HTTPError as e:
            raise PromptRejected(json.loads(e.read())) from None
        return json.loads(body)["prompt_id"]

    def interrupt(self):
        self.request("/interrupt", {}, method="POST")

    def wait_history(self, prompt_id: str, timeout: float = 120) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            h = self.get_json(f"/history/{prompt_id}")
            if prompt_id in h:
                return h[prompt_id]
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s:\n{self.log()[-4000:]}")

    def websocket(self, client_id: str | None = None) -> "WSClient":
        return WSClient(self.port, client_id or str(uuid.uuid4()))


class PromptRejected(Exception):
    def __init__(self, body):
        super().__init__(json.dumps(body)[:2000])
        self.body = body


class WSClient:
    """A /ws listener that collects JSON events; binary preview frames are counted."""

    def __init__(self, port: int, client_id: str):
        import websocket  # websocket-client

        self.client_id = client_id
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws?clientId={client_id}", timeout=60)
        self.events: list[dict] = []
        self.binary_frames = 0

    def recv_until(self, pred, timeout: float = 120) -> list[dict]:
        """Receive until pred(event) is true for one event; returns every event seen so far."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.time()))
            msg = self.ws.recv()
            if isinstance(msg, bytes):
                self.binary_frames += 1
                continue
            ev = json.loads(msg)
            self.events.append(ev)
            if pred(ev):
                return self.events
        raise TimeoutError(f"no matching websocket event in {timeout}s; saw {[e['type'] for e in self.events]}")

    def wait_prompt_end(self, prompt_id: str, timeout: float = 120) -> str:
        """'success', 'interrupted' or 'error' for the prompt."""
        ends = {"execution_success": "success", "execution_interrupted": "interrupted", "execution_error": "error"}

        def done(ev):
            return ev["type"] in ends and ev.get("data", {}).get("prompt_id") == prompt_id

        self.recv_until(done, timeout)
        return ends[self.events[-1]["type"]]

    def of_type(self, kind: str, prompt_id: str | None = None) -> list[dict]:
        return [
            e
            for e in self.events
            if e["type"] == kind and (prompt_id is None or e.get("data", {}).get("prompt_id") == prompt_id)
        ]

    def close(self):
        self.ws.close()
