"""Demo: start a real ComfyUI server with ComfyUI-DSA loaded, list the pack's nodes and run one of its graphs.

Run through `bash scripts/demo` (it installs the pinned host first). Later versions generate a video with the
embedded toy model; see README.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from server_host import ServerHost  # noqa: E402  (the same harness the tests use)

PACK = "ComfyUI-DSA"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=REPO / "demo-output")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        packs = Path(tmp) / "packs"
        packs.mkdir()
        (packs / PACK).symlink_to(REPO, target_is_directory=True)
        host = ServerHost(Path(tmp), packs, PACK, slim=True).start()
        try:
            mine = {k: v for k, v in host.object_info.items() if v["python_module"] == f"custom_nodes.{PACK}"}
            print(f"ComfyUI {host.url} loaded {PACK} with {len(mine)} nodes:")
            for k, v in sorted(mine.items()):
                print(f"  {k:24s} {v['display_name']}  ({v['category']})")
            ws = host.websocket()
            prompt = {"1": {"class_type": "DSANoiseLadder", "inputs": {"schedule": "self_forcing", "extra_steps": 2,
                                                                        "custom_timesteps": "1000, 750, 500, 250",
                                                                        "custom_shift": 5.0}},
                      "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}}}
            pid = host.queue(prompt, ws.client_id)
            status = ws.wait_prompt_end(pid)
            text = ws.of_type("executed", pid)[-1]["data"]["output"]["text"][0]
            ws.close()
            print(f"ran DSANoiseLadder through the server: {status}\n  {text}")
            (a.out / "object_info.json").write_text(json.dumps(mine, indent=1))
        finally:
            host.stop()
    print(f"wrote {a.out / 'object_info.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
