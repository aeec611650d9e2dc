"""API-format prompts the host tests queue (the same JSON the front end posts to /prompt)."""
from __future__ import annotations


def ladder_graph(schedule="self_forcing", extra_steps=0, custom="1000, 750, 500, 250", shift=5.0) -> dict:
    return {
        "1": {"class_type": "DSANoiseLadder", "inputs": {"schedule": schedule, "extra_steps": extra_steps,
                                                          "custom_timesteps": custom, "custom_shift": shift}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}},
    }


def host_ksampler_graph(wan: str, prompt: str, steps=3, width=32, height=32, length=5, seed=0) -> dict:
    """The host's own nodes sampling a tiny Wan file, conditioned through the pack's prompt-embedding node."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": wan, "weight_dtype": "default"}},
        "2": {"class_type": "DSAPromptEmbedding", "inputs": {"embedding": prompt}},
        "3": {"class_type": "EmptyHunyuanLatentVideo",
              "inputs": {"width": width, "height": height, "length": length, "batch_size": 1}},
        "4": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["2", 0], "latent_image": ["3", 0],
            "seed": seed, "steps": steps, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "dsa_test"}},
    }
