"""Causal-AR Wan repacks (e.g. Causal Forcing) on hosts without native causal AR.

ComfyUI 0.33 recognises such a file from its safetensors metadata (config = {"transformer": {"causal_ar":
true}}) and gives it its causal-AR model class, whose sampling has shift 5 (supported_models.
WAN21_CausalAR_T2V). Older hosts (0.3.75) load it as a plain Wan 2.1 with Wan's shift 8, so schedule 'model'
would walk other noise levels than the checkpoint was trained for. DSA Model Loader reads the metadata on every
host and, where the host did not, sets the sampling the newer host gives it, the way ModelSamplingSD3 patches
a MODEL. (UNETLoader on such hosts cannot know: README says what differs.)
"""

from __future__ import annotations

import json

import comfy.model_sampling

from .host_model import causal_ar_class

CAUSAL_AR_SHIFT = 5.0  # ComfyUI's own causal-AR Wan 2.1 T2V model config


def declares_causal_ar(metadata: dict | None) -> bool:
    """Whether a file's safetensors metadata marks it as a causal-AR Wan (as newer hosts read it)."""
    try:
        config = json.loads((metadata or {}).get("config") or "{}")
    except (TypeError, ValueError):
        return False
    transformer = config.get("transformer") if isinstance(config, dict) else None
    return isinstance(transformer, dict) and transformer.get("causal_ar") is True


def give_causal_ar_sampling(model, metadata: dict | None) -> bool:
    """On a freshly loaded MODEL: the causal-AR sampling (shift CAUSAL_AR_SHIFT) when the file declares causal
    AR and the host did not load it as its own causal-AR class. Returns whether it patched."""
    native = causal_ar_class()
    if not declares_causal_ar(metadata) or (native is not None and isinstance(model.model, native)):
        return False

    class CausalARSampling(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    sampling = CausalARSampling(model.model.model_config)
    sampling.set_parameters(shift=CAUSAL_AR_SHIFT, multiplier=1000)
    model.add_object_patch("model_sampling", sampling)
    return True
