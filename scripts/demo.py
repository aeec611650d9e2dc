"""Demo: a real ComfyUI server with ComfyUI-DSA generates a video with the bundled toy model, on CPU, no downloads.

It queues the pack's own template workflows/dsa_toy_demo.json (converted to API format as the front end would), with
the template's preview swapped for saving, and copies the results to --out: the animated WebP video, the step chart
PNG and the step report JSON. Run it through `bash scripts/demo` (that installs the pinned host first).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
from server_host import ServerHost  # noqa: E402  (the harness the tests use)
from workflow_tools import ui_to_api  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
import demo_stream  # noqa: E402  (the streamed video, written as it grows)

PACK = "ComfyUI-DSA"
TEMPLATE = REPO / "workflows" / "dsa_toy_demo.json"


def build_prompt(object_info: dict, prompt_file: str | None, threshold: str | None, seed: int) -> tuple[dict, str, str]:
    api = ui_to_api(json.loads(TEMPLATE.read_text()), object_info)
    sampler = next(k for k, v in api.items() if v["class_type"] == "DSASampler")
    report = next(k for k, v in api.items() if v["class_type"] == "DSAStepReport")
    api[sampler]["inputs"].update(seed=seed)
    if threshold is not None:  # a preset name, or a number on the [0, 1] scale
        try:
            api[sampler]["inputs"].update(threshold_preset="custom", threshold=float(threshold))
        except ValueError:
            api[sampler]["inputs"].update(threshold_preset=threshold)
    if prompt_file:
        next(v for v in api.values() if v["class_type"] == "DSAPromptEmbedding")["inputs"]["embedding"] = prompt_file
    for v in api.values():
        if v["class_type"] == "PreviewImage":
            v.update(class_type="SaveImage", inputs={**v["inputs"], "filename_prefix": "dsa/toy_chart"})
    return api, sampler, report


def chunk_events(prompt_path: Path, video_path: Path) -> list[str] | None:
    """Each chunk's kind read from its context by the toy world (dsa_core.toy.world.context_kind): 'first',
    'continuation' or 'event' (an event is due: the shape is at the wall it drifts towards)."""
    import numpy as np
    from PIL import Image, ImageSequence

    from dsa_core.prompt_files import load_prompt_embedding
    from dsa_core.toy import world as W

    try:
        scene = W.scene_from_prompt(load_prompt_embedding(prompt_path).prompt)
    except ValueError:
        return None
    with Image.open(video_path) as im:
        frames = [np.asarray(f.convert("RGB"), dtype=np.float64) / 255.0 for f in ImageSequence.Iterator(im)]
    half = W.PIXEL_SCALE // 2
    rgb = np.stack([f[half :: W.PIXEL_SCALE, half :: W.PIXEL_SCALE] for f in frames])  # back to latent resolution
    return [c.context for c in W.SceneFitter().chunk_scores(scene, W.encode_rgb(rgb)[0])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "demo-output", help="where the video and chart go")
    ap.add_argument(
        "--prompt", default=None, help="a toy prompt file from models/toy/prompts (default: the template's)"
    )
    ap.add_argument(
        "--threshold", default=None, help="quality, balanced, fast or a number in [0, 1] (default: the template's, 0.5)"
    )
    ap.add_argument("--seed", type=int, default=4)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        packs = Path(tmp) / "packs"
        packs.mkdir()
        (packs / PACK).symlink_to(REPO, target_is_directory=True)
        host = ServerHost(Path(tmp), packs, PACK, slim=True).start()
        try:
            prompt, sampler, report = build_prompt(host.object_info, a.prompt, a.threshold, a.seed)
            demo_stream.add_toy_vae(prompt, sampler)
            ws = host.websocket()
            pid = host.queue(prompt, ws.client_id)
            print(f"ComfyUI {host.url}: queued the toy DSA workflow ({len(prompt)} nodes)")
            stream = demo_stream.StreamWriter(a.out, time.time())
            status = demo_stream.wait_streaming(ws, pid, stream, timeout=600)
            chunks = [ev["data"] for ev in ws.events if ev["type"] == "dsa.steps" and "chunk" in ev["data"]]
            ws.close()
            if status != "success":
                raise SystemExit(f"the workflow ended with {status}:\n{host.log()[-3000:]}")
            outputs = host.wait_history(pid)["outputs"]
            summary = outputs[report]["text"][0]
            copied = []
            for node_out in outputs.values():
                for img in node_out.get("images", []):
                    src = host.base / "output" / img["subfolder"] / img["filename"]
                    dst = a.out / img["filename"]
                    shutil.copyfile(src, dst)
                    copied.append(dst)
            (a.out / "step_report.txt").write_text(summary + "\n")
            emb_node = next(v for v in prompt.values() if v["class_type"] == "DSAPromptEmbedding")
            prompt_file = emb_node["inputs"]["embedding"]
        finally:
            host.stop()
    video = next((p for p in copied if p.suffix == ".webp"), None)
    events = chunk_events(REPO / "models" / "toy" / "prompts" / prompt_file, video) if video else None
    for i, d in enumerate(chunks):
        conf = ", ".join(f"{c:.2f}" for c in d["record"]["confidence"] if c is not None)
        ev = ""
        if events is not None and i < len(events):
            ev = {"first": "first chunk (no context)", "continuation": "continuation"}.get(
                events[i], "EVENT due (at the wall: teleport)"
            )
        print(
            f"  chunk {d['chunk'] + 1}/{d['num_chunks']}: {d['record']['steps']} steps "
            f"({d['record']['stop_reason']}), {ev}; confidence after each step: {conf}"
        )
    print(summary)
    print(stream.summary())
    for p in copied:
        print(f"wrote {p}")
    print(f"done in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
