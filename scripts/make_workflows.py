"""Write the example workflows in workflows/ (UI format) from the specs below, against the host's /object_info.

Run with the host's python after a node schema change: `$(python3 scripts/host.py python) scripts/make_workflows.py`.
The tests rebuild them and fail when a committed file is out of date.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from workflow_tools import N, build_ui  # noqa: E402

# The file names the README tells users to use.
GENERATOR = "self_forcing_dmd.safetensors"
HEAD = "self_forcing_dsa_head.safetensors"
TEXT_ENCODER = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
VAE = "wan_2.1_vae.safetensors"
CAUSAL_FORCING = "causal_forcing-framewise.safetensors"
START_IMAGE = "example.png"  # ComfyUI ships it in input/
TOY_GENERATOR = "dsa_toy_wan.safetensors"
# The sampler and extender nodes: room for their widgets plus the live player (170 px) and the step chart (150 px)
# in the classic canvas renderer, which squeezes those into whatever height the saved node leaves them.
DSA_NODE_SIZE = (340, 900)
DSA_I2V_SIZE = (340, 960)  # + start image and noise inputs

# The front end offers these downloads when a loader names the file ('models' in the node's properties). The same
# entries as the host's own template video_causal_forcing_i2v (comfyui-workflow-templates); tests compare them.
REPACK = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
MODEL_DOWNLOADS = {
    CAUSAL_FORCING: {
        "name": CAUSAL_FORCING,
        "url": "https://huggingface.co/TalmajM/causal_forcing_framewise_ComfyUI_repackaged/resolve/main/"
        "split_files/diffusion_models/causal_forcing-framewise.safetensors",
        "directory": "diffusion_models",
    },
    VAE: {"name": VAE, "url": f"{REPACK}/vae/{VAE}", "directory": "vae"},
    TEXT_ENCODER: {"name": TEXT_ENCODER, "url": f"{REPACK}/text_encoders/{TEXT_ENCODER}", "directory": "text_encoders"},
}
TOY_PROMPT = "toy_magenta_square_sitting_still_on_black.safetensors"

CONVERT_COMMAND = f"python -m dsa_core.convert self_forcing_dmd.pt {GENERATOR}"

PROMPT_A = "A red fox trots through fresh snow in a birch forest, morning light, cinematic tracking shot"
PROMPT_B = "The fox stops and looks up as snow starts falling heavily, close-up"
PROMPT_C = "The fox runs off between the trees into a bright clearing, wide shot"

SETUP_NOTE = f"""## DSA: text to video
Files (see the pack's README):
- `models/diffusion_models/{GENERATOR}`: Self-Forcing, converted with `{CONVERT_COMMAND}`
- `models/dsa/{HEAD}`: its confidence head (`python -m dsa_core.training.calibrate_head`)
- `models/text_encoders/{TEXT_ENCODER}`, `models/vae/{VAE}`: ComfyUI's Wan 2.1 repack

**threshold**: one scale 0..1. A chunk stops refining once its least confident frame reaches it. Higher = more steps.
The chart on the sampler shows steps per chunk and the confidence after each step as it runs."""


def loader(i, pos, head=HEAD):
    return N(i, "DSAModelLoader", pos, {"generator": GENERATOR, "head": head, "weight_dtype": "default"})


def text(i, pos, prompt, clip_id=2):
    return N(i, "CLIPTextEncode", pos, {"text": prompt}, {"clip": (clip_id, 0)}, size=(400, 160))


def clip(i, pos):
    return N(i, "CLIPLoader", pos, {"clip_name": TEXT_ENCODER, "type": "wan", "device": "default"})


def sampler(i, pos, model, cond, head, vae=None, **w):
    widgets = {"seed": 42, "width": 832, "height": 480, "length": 81, "frames_per_chunk": 3, **w}
    links = {"model": model, "positive": cond, "head": head, **({"vae": vae} if vae else {})}
    return N(i, "DSASampler", pos, widgets, links, size=DSA_NODE_SIZE)


def decode_and_save(i, pos, latent, prefix, vae_id=4):
    return [
        N(i, "VAEDecode", pos, {}, {"samples": latent, "vae": (vae_id, 0)}),
        save_video(i + 1, (pos[0] + 340, pos[1]), (i, 0), prefix),
    ]


def save_video(i, pos, images, prefix):
    return N(i, "SaveAnimatedWEBP", pos, {"filename_prefix": prefix, "fps": 16.0}, {"images": images}, size=(420, 420))


def report(i, pos, rep):
    return [
        N(i, "DSAStepReport", pos, {}, {"report": rep}),
        N(i + 1, "PreviewImage", (pos[0] + 340, pos[1]), {}, {"images": (i, 0)}, size=(420, 280)),
    ]


def text_to_video():
    return [
        N(100, "MarkdownNote", (-460, 0), text=SETUP_NOTE, size=(420, 420)),
        loader(1, (0, 0)),
        clip(2, (0, 160)),
        text(3, (0, 320), PROMPT_A),
        N(4, "VAELoader", (0, 520), {"vae_name": VAE}),
        sampler(5, (440, 0), (1, 0), (3, 0), (1, 1), policy="confidence", threshold_preset="balanced"),
        *decode_and_save(6, (820, 0), (5, 0), "dsa/t2v"),
        *report(8, (820, 480), (5, 2)),
    ]


def long_video():
    ext = {"policy": "confidence", "threshold_preset": "balanced", "cache_window": 21, "sink_frames": 3}
    return [
        N(
            100,
            "MarkdownNote",
            (-460, 0),
            size=(420, 300),
            text=(
                "## DSA: a long video with prompt switches\nThe sampler makes "
                "81 frames; each extender continues the same "
                "KV cache (nothing is recomputed) for 48 more frames under a new prompt. A rolling cache window of 21 "
                "latent frames plus 3 sink frames keeps memory and per-chunk "
                "time flat.\n\nFiles as in the text-to-video "
                "template."
            ),
        ),
        loader(1, (0, 0)),
        clip(2, (0, 160)),
        N(4, "VAELoader", (0, 320), {"vae_name": VAE}),
        text(3, (0, 440), PROMPT_A),
        text(10, (0, 640), PROMPT_B),
        text(11, (0, 840), PROMPT_C),
        sampler(5, (440, 0), (1, 0), (3, 0), (1, 1), **ext),
        N(
            12,
            "DSAExtend",
            (820, 0),
            {"seed": 43, "add_frames": 48, "recache": "none", **ext},
            {"model": (1, 0), "positive": (10, 0), "head": (1, 1), "state": (5, 1)},
            size=DSA_NODE_SIZE,
        ),
        N(
            13,
            "DSAExtend",
            (1200, 0),
            {"seed": 44, "add_frames": 48, "recache": "none", **ext},
            {"model": (1, 0), "positive": (11, 0), "head": (1, 1), "state": (12, 1)},
            size=DSA_NODE_SIZE,
        ),
        *decode_and_save(6, (1580, 0), (13, 0), "dsa/long"),
        *report(8, (1580, 480), (13, 2)),
    ]


def fixed_vs_adaptive():
    return [
        N(
            100,
            "MarkdownNote",
            (-460, 0),
            size=(420, 260),
            text=(
                "## Fixed 4 steps versus DSA\nSame model, prompt and seed. "
                "Top: Self-Forcing's fixed 4 steps per chunk. "
                "Bottom: DSA lets confident chunks stop early and gives hard ones extra levels. Compare the videos and "
                "the two step reports (NFE and speed-up).\n\nFiles as in the text-to-video template."
            ),
        ),
        loader(1, (0, 0)),
        clip(2, (0, 160)),
        text(3, (0, 320), PROMPT_A),
        N(4, "VAELoader", (0, 520), {"vae_name": VAE}),
        sampler(5, (440, 0), (1, 0), (3, 0), (1, 1), policy="fixed", max_steps=4),
        sampler(12, (440, 700), (1, 0), (3, 0), (1, 1), policy="confidence", threshold_preset="balanced"),
        *decode_and_save(6, (820, 0), (5, 0), "dsa/fixed"),
        *report(8, (1580, 0), (5, 2)),
        *decode_and_save(13, (820, 700), (12, 0), "dsa/adaptive"),
        *report(15, (1580, 700), (12, 2)),
    ]


CAUSAL_NOTE = f"""## DSA on Causal Forcing ({{mode}})
One click in ComfyUI's missing-models dialog downloads every file (the same ones as ComfyUI's own Causal Forcing
template):
- `models/diffusion_models/{CAUSAL_FORCING}`: Causal Forcing, frame-wise, 4 steps (ComfyUI repack)
- `models/text_encoders/{TEXT_ENCODER}`, `models/vae/{VAE}`: ComfyUI's Wan 2.1 repack

Frame-wise model: frames_per_chunk 1. schedule **model** walks the model's own noise levels (what ComfyUI's Sampler AR
Video does with BasicScheduler simple, 4 steps); max_steps above 4 adds lower levels for hard frames.
No confidence head exists for Causal Forcing yet, so this template uses policy **heuristic** (training-free: a frame
stops refining when its estimate stops changing; not DSA's learned confidence). Policy fixed with max_steps 4 and
noise sampler_ar_video reproduces ComfyUI's own sampler. A head calibrated for it (`python -m
dsa_core.training.calibrate_head`) enables policy confidence.{{extra}}"""

I2V_EXTRA = """

**Image to video**: the start image is resized to width x height, encoded with the VAE into the first latent frame
and committed as context; length counts it (81 frames = the image + 80 generated)."""


def causal_forcing_sampler(i, pos, cond, **links):
    widgets = {
        "seed": 42,
        "width": 832,
        "height": 480,
        "length": 81,
        "frames_per_chunk": 1,
        "policy": "heuristic",
        "threshold_preset": "balanced",
        "min_steps": 2,
        "max_steps": 6,
        "schedule": "model",
    }
    return N(i, "DSASampler", pos, widgets, {"model": (1, 0), "positive": cond, **links}, size=DSA_I2V_SIZE)


def causal_forcing(i2v: bool):
    nodes = [
        N(
            100,
            "MarkdownNote",
            (-460, 0),
            text=CAUSAL_NOTE.format(mode="image to video" if i2v else "text to video", extra=I2V_EXTRA if i2v else ""),
            size=(420, 520),
        ),
        N(1, "UNETLoader", (0, 0), {"unet_name": CAUSAL_FORCING, "weight_dtype": "default"}),
        clip(2, (0, 160)),
        N(4, "VAELoader", (0, 320), {"vae_name": VAE}),
        text(
            3,
            (0, 440),
            PROMPT_A
            if not i2v
            else "The fox in the picture turns its head and trots off through the snow, camera follows",
        ),
    ]
    links = {}
    if i2v:
        nodes.append(N(10, "LoadImage", (0, 640), {"image": START_IMAGE}, size=(320, 360)))
        links = {"start_image": (10, 0), "vae": (4, 0)}
    prefix = "dsa/causal_forcing_" + ("i2v" if i2v else "t2v")
    nodes.append(causal_forcing_sampler(5, (440, 0), (3, 0), **links))
    if i2v:  # the VAE that encodes the start image also decodes each chunk: the sampler's images are the video
        nodes.append(save_video(7, (820, 0), (5, 3), prefix))
    else:
        nodes += decode_and_save(6, (820, 0), (5, 0), prefix)
    nodes += report(8, (820, 480), (5, 2))
    return nodes


def toy_demo():
    return [
        N(
            100,
            "MarkdownNote",
            (-460, 0),
            size=(420, 300),
            text=(
                "## DSA toy demo: runs anywhere, no downloads\nA tiny causal "
                "Wan (the pack's bundled toy model, trained "
                "by `python -m dsa_core.toy.reproduce`) on synthetic shapes: "
                "4 chunks; later chunks either continue the "
                "motion or hold a random event (the shape changes colour or "
                "jumps). The prompt is a stored embedding; the "
                "toy decoder maps its latents to colours. Watch the chart on "
                "the sampler: the steps differ per chunk.\n\n"
                "The toy head's confidence after step k reads \"less left to gain than this fraction of chunks at "
                "step k\" (step-rank label on the teacher's measure of what further steps would improve). This "
                "prompt and seed at threshold 0.5 give 2, 3, 1, 2 steps, the event chunk (a jump) the most; over "
                "many seeds the head gives event chunks only slightly more than continuations (see "
                "results/toy_repro). 0.75 and up take all 6 steps."
            ),
        ),
        N(
            1,
            "DSAModelLoader",
            (0, 0),
            {
                "generator": TOY_GENERATOR,
                "head": "auto (embedded in the generator file, else none)",
                "weight_dtype": "default",
            },
        ),
        N(2, "DSAPromptEmbedding", (0, 160), {"embedding": TOY_PROMPT}),
        # the toy codec as a VAE: the sampler streams each chunk's frames to its live player
        N(10, "DSAToyVAE", (0, 300), {"scale": 8}),
        sampler(
            5,
            (380, 0),
            (1, 0),
            (2, 0),
            (1, 1),
            vae=(10, 0),
            seed=4,
            width=64,
            height=64,
            length=45,
            policy="confidence",
            threshold_preset="custom",
            threshold=0.5,
        ),
        N(6, "DSAToyDecode", (760, 0), {}, {"samples": (5, 0)}),
        N(
            7,
            "SaveAnimatedWEBP",
            (1100, 0),
            {"filename_prefix": "dsa/toy", "fps": 4.0},
            {"images": (6, 0)},
            size=(420, 420),
        ),
        *report(8, (760, 480), (5, 2)),
    ]


TINY_VAE = "lighttaew2_1.safetensors"  # LightX2V's tiny Wan 2.1 VAE; Load VAE lists it from models/vae_approx

REALTIME_NOTE = f"""## DSA: real-time preview
The sampler decodes each chunk with a **tiny VAE** as soon as it is generated: the video plays on the sampler
while it is made, at a fraction of the Wan VAE's cost per chunk. The final video is decoded from the sampler's
latent with the full Wan 2.1 VAE (VAE Decode), so its quality is the Wan VAE's.

Files as in the text-to-video template, plus `models/vae_approx/{TINY_VAE}` (LightX2V's tiny Wan 2.1 VAE, from
its Autoencoders repository on Hugging Face; ComfyUI's own comfy/taesd/taehv.py runs it). taew2_1 works the same
from `models/vae`."""


def realtime_preview():
    return [
        N(100, "MarkdownNote", (-460, 0), text=REALTIME_NOTE, size=(420, 360)),
        loader(1, (0, 0)),
        clip(2, (0, 160)),
        text(3, (0, 320), PROMPT_A),
        N(4, "VAELoader", (0, 520), {"vae_name": VAE}),
        N(11, "VAELoader", (0, 620), {"vae_name": TINY_VAE}),
        sampler(5, (440, 0), (1, 0), (3, 0), (1, 1), vae=(11, 0), policy="confidence", threshold_preset="balanced"),
        *decode_and_save(6, (820, 0), (5, 0), "dsa/realtime"),
        *report(8, (820, 480), (5, 2)),
    ]


TOY_LIVE_NOTE = """## DSA Live on the toy model: steer the video while it plays
Press Run: the toy video plays on DSA Live until you press **stop** (or max_frames). While it plays, type a stored
prompt into live_prompt and press **apply prompt**, e.g. `cyan disc drifting up on grey` or `red square drifting
right on black` (the toy model has no text encoder: a real model's graph connects Load CLIP to the clip input and
takes any prompt), or move the threshold. Each change is marked on the chart at the chunk it took effect at. Stop
returns the video: it is saved, and an extender could continue its state."""


def toy_live():
    return [
        N(100, "MarkdownNote", (-460, 0), text=TOY_LIVE_NOTE, size=(420, 300)),
        N(
            1,
            "DSAModelLoader",
            (0, 0),
            {
                "generator": TOY_GENERATOR,
                "head": "auto (embedded in the generator file, else none)",
                "weight_dtype": "default",
            },
        ),
        N(2, "DSAPromptEmbedding", (0, 160), {"embedding": TOY_PROMPT}),
        N(10, "DSAToyVAE", (0, 300), {"scale": 8}),
        N(
            5,
            "DSALive",
            (380, 0),
            {
                "seed": 4,
                "width": 64,
                "height": 64,
                "max_frames": 0,
                "policy": "confidence",
                "threshold_preset": "custom",
                "threshold": 0.5,
                "cache_window": 6,
            },
            {"model": (1, 0), "positive": (2, 0), "head": (1, 1), "vae": (10, 0)},
            size=(DSA_NODE_SIZE[0], DSA_NODE_SIZE[1] + 260),
        ),
        N(
            7,
            "SaveAnimatedWEBP",
            (760, 0),
            {"filename_prefix": "dsa/toy_live", "fps": 4.0},
            {"images": (5, 3)},
            size=(420, 420),
        ),
        *report(8, (760, 480), (5, 2)),
    ]


WORKFLOWS = {
    "dsa_text_to_video": text_to_video,
    "dsa_long_video_prompt_switch": long_video,
    "dsa_fixed_vs_adaptive": fixed_vs_adaptive,
    "dsa_toy_demo": toy_demo,
    "dsa_causal_forcing_i2v": lambda: causal_forcing(i2v=True),
    "dsa_causal_forcing_t2v": lambda: causal_forcing(i2v=False),
    "dsa_realtime_preview": realtime_preview,
    "dsa_toy_live": toy_live,
}


def add_model_downloads(wf: dict) -> dict:
    """Give every loader that names a publicly downloadable file the front end's download metadata."""
    for node in wf["nodes"]:
        files = [v for v in node.get("widgets_values") or [] if isinstance(v, str) and v in MODEL_DOWNLOADS]
        if files:
            node["properties"]["models"] = [dict(MODEL_DOWNLOADS[f]) for f in files]
    return wf


def build_all(object_info: dict) -> dict[str, dict]:
    return {name: add_model_downloads(build_ui(spec(), object_info)) for name, spec in WORKFLOWS.items()}


def dump(wf: dict) -> str:
    return json.dumps(wf, indent=1) + "\n"


def main() -> int:
    from server_host import ServerHost

    with tempfile.TemporaryDirectory() as tmp:
        packs = Path(tmp) / "packs"
        packs.mkdir()
        (packs / "ComfyUI-DSA").symlink_to(REPO, target_is_directory=True)
        host = ServerHost(Path(tmp), packs, "ComfyUI-DSA", slim=True).start()
        try:
            info = host.object_info
        finally:
            host.stop()
    out = REPO / "workflows"
    out.mkdir(exist_ok=True)
    for name, wf in build_all(info).items():
        (out / f"{name}.json").write_text(dump(wf))
        print("wrote", out / f"{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
