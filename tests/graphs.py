"""API-format prompts the host tests queue (the same JSON the front end posts to /prompt)."""

from __future__ import annotations


def ladder_graph(schedule="self_forcing", extra_steps=0, custom="1000, 750, 500, 250", shift=5.0) -> dict:
    return {
        "1": {
            "class_type": "DSANoiseLadder",
            "inputs": {
                "schedule": schedule,
                "extra_steps": extra_steps,
                "custom_timesteps": custom,
                "custom_shift": shift,
            },
        },
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}},
    }


def host_ksampler_graph(wan: str, prompt: str, steps=3, width=32, height=32, length=5, seed=0) -> dict:
    """The host's own nodes sampling a tiny Wan file, conditioned through the pack's prompt-embedding node."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": wan, "weight_dtype": "default"}},
        "2": {"class_type": "DSAPromptEmbedding", "inputs": {"embedding": prompt}},
        "3": {
            "class_type": "EmptyHunyuanLatentVideo",
            "inputs": {"width": width, "height": height, "length": length, "batch_size": 1},
        },
        "4": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["2", 0],
                "latent_image": ["3", 0],
                "seed": seed,
                "steps": steps,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
            },
        },
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "dsa_test"}},
    }


POLICY_DEFAULTS = {
    "policy": "confidence",
    "threshold_preset": "balanced",
    "threshold": 0.75,
    "min_steps": 1,
    "max_steps": 6,
    "schedule": "self_forcing",
    "cache_window": 0,
    "sink_frames": 0,
}


def dsa_graph(
    wan: str,
    prompt_a: str,
    prompt_b: str | None = None,
    head: str = "auto (embedded in the generator file, else none)",
    width=32,
    height=32,
    length=9,
    add_frames=12,
    seed=0,
    extend=True,
    **policy,
) -> dict:
    """DSA Model Loader -> Confidence Sampler -> AR Frame Extender -> Step Report (+ the host's SaveLatent)."""
    pol = {**POLICY_DEFAULTS, **policy}
    g = {
        "1": {"class_type": "DSAModelLoader", "inputs": {"generator": wan, "head": head, "weight_dtype": "default"}},
        "2": {"class_type": "DSAPromptEmbedding", "inputs": {"embedding": prompt_a}},
        "3": {
            "class_type": "DSASampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "head": ["1", 1],
                "seed": seed,
                "width": width,
                "height": height,
                "length": length,
                "frames_per_chunk": 3,
                **pol,
            },
        },
        "6": {"class_type": "DSAStepReport", "inputs": {"report": ["3", 2], "width": 512, "height": 288}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "dsa_sampler"}},
    }
    if extend:
        g["4"] = {"class_type": "DSAPromptEmbedding", "inputs": {"embedding": prompt_b or prompt_a}}
        g["5"] = {
            "class_type": "DSAExtend",
            "inputs": {
                "model": ["1", 0],
                "positive": ["4", 0],
                "head": ["1", 1],
                "state": ["3", 1],
                "seed": seed + 1,
                "add_frames": add_frames,
                "frames_per_chunk": 3,
                "recache": "none",
                **pol,
            },
        }
        g["8"] = {"class_type": "DSAStepReport", "inputs": {"report": ["5", 2], "width": 512, "height": 288}}
        g["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "dsa_extended"}}
    return g


# A VAE on the DSA nodes (node "10"), the host's own VAE Decode of a LATENT output, a node's IMAGE output.
def with_vae(g, vae_name, nodes=("3", "5")):
    g["10"] = {"class_type": "VAELoader", "inputs": {"vae_name": vae_name}}
    for n in nodes:
        if n in g:
            g[n]["inputs"]["vae"] = ["10", 0]
    return g


def host_decode(g, latent_node, out_id):
    g[out_id] = {"class_type": "VAEDecode", "inputs": {"samples": [latent_node, 0], "vae": ["10", 0]}}
    g[out_id + "p"] = {"class_type": "PreviewImage", "inputs": {"images": [out_id, 0]}}
    return g


def images(res, node):
    return res.outputs[node][3][0]
