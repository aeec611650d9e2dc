"""Bad inputs a careless or unlucky user sends, each with the one message it must get and the input it concerns.

The in-process and the server tests run the same table: each case must give exactly one message, at queue
time (a node error filed under ``input``) or when the node runs (one execution error from ``node``), and
``fragment`` must be in it. ``when``:
  "queue": a node error on every host;
  "run": one execution error (rules between inputs: the host would file a validator's message under every
         input the validator takes, see nodes/input_checks.py);
  "combo": a value outside a combo's options: the host's own node error ("not in"), at queue time on every
         host (0.3.75 through the option list nodes/combo_input.py declares);
  "ok": no error: the prompt must run (a value the pack must handle, not refuse).
A change "node:input" edits another node of the graph than the case's (e.g. the image feeding a start image).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from graphs import dsa_graph, ladder_graph

MISSING = object()  # a change that deletes the input from the prompt (an API prompt that omits a widget)


@dataclass(frozen=True)
class Case:
    name: str
    graph: str  # "dsa" (loader -> sampler -> extender) or "ladder"
    node: str
    changes: dict = field(default_factory=dict)
    input: str = ""
    fragment: str = ""
    when: str = "queue"


CASES = [
    # numeric ranges: the host's own check, once, under the input
    Case("width 0", "dsa", "3", {"width": 0}, "width", "smaller than min of 16"),
    Case("height above max", "dsa", "3", {"height": 8208}, "height", "bigger than max of 8192"),
    Case("threshold 1.5", "dsa", "3", {"threshold": 1.5}, "threshold", "1.5 is above its maximum 1.0"),
    Case("max_steps 100", "dsa", "3", {"max_steps": 100}, "max_steps", "bigger than max of 12"),
    Case("add_frames 3", "dsa", "5", {"add_frames": 3}, "add_frames", "smaller than min of 4"),
    Case("extender frames_per_chunk 0", "dsa", "5", {"frames_per_chunk": 0}, "frames_per_chunk", "smaller than min"),
    Case("ladder extra_steps 9", "ladder", "1", {"extra_steps": 9}, "extra_steps", "bigger than max of 8"),
    Case("ladder custom_shift 0", "ladder", "1", {"custom_shift": 0.0}, "custom_shift", "smaller than min"),
    # single-input validators: once, under their input
    Case("unreadable timesteps", "ladder", "1", {"custom_timesteps": "1000, a"}, "custom_timesteps", "could not read"),
    Case("rising timesteps", "ladder", "1", {"custom_timesteps": "1000, 800, 900"}, "custom_timesteps", "decrease"),
    Case("no such generator", "dsa", "1", {"generator": "nope.safetensors"}, "generator", "is not one of its options"),
    Case("no such prompt file", "dsa", "2", {"embedding": "nope.safetensors"}, "embedding", "not one of its options"),
    # an API prompt that omits a widget: the host's own required_input_missing
    Case("sampler without cache_window", "dsa", "3", {"cache_window": MISSING}, "cache_window", "missing"),
    Case("sampler without width", "dsa", "3", {"width": MISSING}, "width", "missing"),
    Case("extender without add_frames", "dsa", "5", {"add_frames": MISSING}, "add_frames", "missing"),
    Case("ladder without timesteps", "ladder", "1", {"custom_timesteps": MISSING}, "custom_timesteps", "missing"),
    Case("loader without generator", "dsa", "1", {"generator": MISSING}, "generator", "missing"),
    # combo values that are not options (saved or API workflows carry such values)
    Case("policy bogus", "dsa", "3", {"policy": "bogus"}, "policy", "policy 'bogus' is not one of", "combo"),
    Case("preset bogus", "dsa", "3", {"threshold_preset": "x"}, "threshold_preset", "is not one of", "combo"),
    Case("schedule not offered", "dsa", "3", {"schedule": "causvid_extended"}, "schedule", "not one of", "combo"),
    Case("recache bogus", "dsa", "5", {"recache": "bogus"}, "recache", "recache 'bogus' is not one of", "combo"),
    Case("loader head bogus", "dsa", "1", {"head": "bogus"}, "head", "head 'bogus' is not one of", "combo"),
    Case("weight_dtype bogus", "dsa", "1", {"weight_dtype": "fp7"}, "weight_dtype", "is not one of", "combo"),
    Case("ladder schedule bogus", "ladder", "1", {"schedule": "bogus"}, "schedule", "is not one of", "combo"),
    # NaN passes the host's range check: the node's one-input validator
    Case("threshold nan", "dsa", "3", {"threshold": "nan"}, "threshold", "threshold is nan"),
    Case("extender threshold inf", "dsa", "5", {"threshold": "inf"}, "threshold", "threshold is inf"),
    # NaN in a number no validator takes: the node's schema check when it starts (one execution error)
    Case("mean_steps nan", "dsa", "3", {"mean_steps": "nan"}, "mean_steps", "mean_steps is nan", "run"),
    Case("ladder custom_shift nan", "ladder", "1", {"custom_shift": "nan"}, "custom_shift", "is nan", "run"),
    # rules between inputs: one execution error, before any model work
    Case("min above max", "dsa", "3", {"min_steps": 5, "max_steps": 4}, "min_steps", "min_steps (5) is above", "run"),
    Case("width 40", "dsa", "3", {"width": 40}, "width", "multiples of 16", "run"),
    Case("length 11", "dsa", "3", {"length": 11}, "length", "length must be 4k+1", "run"),
    Case("length not whole chunks", "dsa", "3", {"length": 13}, "length", "not a multiple of frames_per", "run"),
    Case("window below a chunk", "dsa", "3", {"cache_window": 1}, "cache_window", "smaller than a chunk", "run"),
    Case("sinks without window", "dsa", "3", {"sink_frames": 2}, "sink_frames", "sink_frames only apply", "run"),
    Case("add_frames 6", "dsa", "5", {"add_frames": 6}, "add_frames", "multiple of 4", "run"),
    Case("add_frames not whole chunks", "dsa", "5", {"add_frames": 8}, "add_frames", "not a whole number", "run"),
    # start images and latents to continue that the model cannot use
    Case("start image batch of 4", "i2v", "3", {"21:batch_size": 4}, "start_image", "a batch of 4 images", "run"),
    Case("start image, length 1", "i2v", "3", {"length": 1}, "length", "the start image alone", "run"),
    Case("Mochi latent", "latent_mochi", "5", {}, "latent", "has 12 channels", "run"),
    Case("LTXV latent", "latent_ltxv", "5", {}, "latent", "has 128 channels", "run"),
    Case("image latent", "latent_image", "5", {}, "latent", "the extender needs a Wan 2.1 video latent", "run"),
    Case("Wan VAE on the toy model", "toy_wan_vae", "3", {}, "vae", "connect DSA Toy VAE", "run"),
    # the host's AR noise at the top of the seed range: runs (seed + block*1000 + step wraps around 2^64)
    Case("native noise, top seed", "dsa", "3", {"seed": 2**64 - 1, "noise": "sampler_ar_video"}, when="ok"),
]

LATENT_SOURCES = {
    "latent_mochi": ("EmptyMochiLatentVideo", {"width": 32, "height": 32, "length": 7, "batch_size": 1}),
    "latent_ltxv": ("EmptyLTXVLatentVideo", {"width": 64, "height": 64, "length": 9, "batch_size": 1}),
    "latent_image": ("EmptyLatentImage", {"width": 32, "height": 32, "batch_size": 1}),
}


def base_graph(kind: str, files: dict) -> dict:
    """files: the test's tiny_models plus "vae" (a tiny Wan 2.1 VAE in models/vae)."""
    if kind == "ladder":
        return ladder_graph("custom")
    g = dsa_graph(files["wan_with_head"], files["prompt_a"], seed=11, policy="fixed", max_steps=4)
    if kind == "i2v":
        g["20"] = {"class_type": "VAELoader", "inputs": {"vae_name": files["vae"]}}
        g["21"] = {
            "class_type": "EmptyImage",
            "inputs": {"width": 40, "height": 32, "batch_size": 1, "color": 0x3366CC},
        }
        g["3"]["inputs"].update(start_image=["21", 0], vae=["20", 0], frames_per_chunk=1)
    if kind == "toy_wan_vae":  # the bundled toy model (its own codec) with a Wan 2.1 VAE on the sampler
        g["1"]["inputs"]["generator"] = "dsa_toy_wan.safetensors"
        g["20"] = {"class_type": "VAELoader", "inputs": {"vae_name": files["vae"]}}
        g["3"]["inputs"]["vae"] = ["20", 0]
    if kind in LATENT_SOURCES:
        cls, inputs = LATENT_SOURCES[kind]
        g["30"] = {"class_type": cls, "inputs": dict(inputs)}
        del g["5"]["inputs"]["state"]
        g["5"]["inputs"]["latent"] = ["30", 0]
    return g


def case_graph(case: Case, files: dict) -> dict:
    g = copy.deepcopy(base_graph(case.graph, files))
    if case.node == "5":  # the extender's case: the sampler's own outputs would still be queued without it
        del g["6"], g["7"]
        if case.graph in LATENT_SOURCES:  # and its latent does not come from the sampler
            del g["3"]
    for name, value in case.changes.items():
        node, _, name = name.rpartition(":")
        inputs = g[node or case.node]["inputs"]
        if value is MISSING:
            del inputs[name]
        else:
            inputs[name] = value
    return g


def expected_when(case: Case, version: str) -> str:
    """When the case's one message comes (the same on every host ``version``)."""
    return "queue" if case.when == "combo" else case.when


def check_node_errors(case: Case, node_errors: dict) -> str:
    """Exactly one node error, from the case's node, filed under its input; returns its text."""
    assert list(node_errors) == [case.node], (case.name, node_errors)
    (err,) = node_errors[case.node]["errors"]  # one problem, one message
    assert err["extra_info"]["input_name"] == case.input, (case.name, err)
    text = f"{err['message']}: {err['details']}"
    expected = "not in" if case.when == "combo" else case.fragment
    assert expected in text, (case.name, text)
    return text


def check_execution_errors(case: Case, errors: list[dict]) -> str:
    """Exactly one execution error, from the case's node, naming the input; returns its text."""
    (err,) = errors
    assert err["node_id"] == case.node and err["exception_type"] == "DSAInputError", (case.name, err)
    msg = err["exception_message"]
    assert case.fragment in msg and case.input in msg, (case.name, msg)
    return msg
