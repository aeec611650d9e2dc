"""Generate a video with the committed toy model (no ComfyUI, no downloads): a GIF, the step chart and
the run record.

  python -m dsa_core.toy.demo --out demo-output [--prompt 1] [--threshold balanced] [--frames 12]

The model (models/toy/dsa_toy_wan.safetensors) and the prompts (models/toy/prompts/) were made by
``python -m dsa_core.toy.reproduce --out results/toy_repro --save-model models/toy`` (see
results/toy_repro/README.md). The ComfyUI demo (bash scripts/demo) runs the same model through the nodes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..ar_sampler import sample_video
from ..causal_wan import CausalWan
from ..checkpoint import load_generator
from ..confidence_head import load_head
from ..policies import ConfidencePolicy, threshold_from_preset
from ..prompt_files import load_prompt_embedding
from ..report_chart import draw_step_chart
from ..schedules import extended_ladder, self_forcing_ladder
from . import demo_assets, write_gif
from .world import decode_to_rgb

CONTEXT_NAMES = {
    "first": "first chunk (no context)",
    "continuation": "continuation (context: nothing due)",
    "event": "EVENT due (context: at the wall, it teleports)",
    None: "?",
}


def chunk_lines(prompt: str, latent, rec) -> list[str]:
    """Per chunk: its steps, its kind read from its CONTEXT by the toy world (first chunk, continuation, or an
    event due), and whether the generated chunk is valid (sharp frames forming an allowed continuation)."""
    from . import world as W

    try:
        scores = W.SceneFitter().chunk_scores(W.scene_from_prompt(prompt), latent)
    except ValueError:  # not a toy-world prompt
        scores = [None] * len(rec.chunks)
    return [
        f"  chunk {i + 1}: {c.steps} steps ({c.stop_reason}), {CONTEXT_NAMES[sc.context if sc else None]}"
        + ("" if sc is None else ", valid" if sc.valid else ", not valid")
        for i, (c, sc) in enumerate(zip(rec.chunks, scores))
    ]


def main(argv=None) -> int:
    assets = demo_assets()
    ap = argparse.ArgumentParser(
        prog="python -m dsa_core.toy.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="demo-output")
    ap.add_argument("--model", default=str(assets.model))
    ap.add_argument("--prompt", default="0", help="index into models/toy/prompts, or a prompt file path")
    ap.add_argument("--threshold", default="balanced", help="preset name or a number in [0, 1]")
    ap.add_argument(
        "--frames", type=int, default=assets.num_frames, help=f"latent frames (a multiple of {assets.chunk_frames})"
    )
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)  # a 1M-parameter model: threads only add overhead (and thrash on busy machines)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pfile = Path(a.prompt) if not a.prompt.isdigit() else assets.prompts[int(a.prompt)]
    emb = load_prompt_embedding(pfile)
    dit = load_generator(a.model, dtype="fp32")
    head = load_head(a.model, expected_dim=dit.config.dim)
    cw = CausalWan(dit, dit.config)
    ladder = extended_ladder(self_forcing_ladder(), assets.max_steps)
    policy = ConfidencePolicy(threshold_from_preset(a.threshold), 1, assets.max_steps)
    lat, _, rec = sample_video(
        cw,
        cw.encode_text(emb.context.float()),
        num_frames=a.frames,
        latent_h=assets.latent_h,
        latent_w=assets.latent_w,
        chunk_frames=assets.chunk_frames,
        ladder=ladder,
        policy=policy,
        seed=a.seed,
        head=head,
    )
    video = decode_to_rgb(lat)[0]
    gif = write_gif(video, out / "toy_video.gif")
    report = rec.to_dict()
    draw_step_chart(report).save(out / "toy_step_chart.png")
    (out / "toy_record.json").write_text(json.dumps(report, indent=1))
    print(f"prompt: {emb.prompt!r}\n{rec.summary()}")
    for line in chunk_lines(emb.prompt, lat[0], rec):
        print(line)
    print(f"wrote {gif}, {out / 'toy_step_chart.png'}, {out / 'toy_record.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
