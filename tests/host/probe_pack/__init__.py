"""A test-only node pack loaded beside DSA: an attention override made the way
ModelPatcher.set_model_optimized_attention makes it (SageAttention-style patch nodes do the same), which counts
its calls per label and scales the attention output, so a test can see over HTTP whether (and how often) a
sampler's attention calls reach it.

GET /dsa_probe/calls -> {label: calls}; POST /dsa_probe/reset clears the counts.
"""

from __future__ import annotations

import collections

CALLS: collections.Counter = collections.Counter()


class DSAProbeAttentionOverride:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "label": ("STRING", {"default": "probe"}),
                "scale": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
            }
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "testing"

    def patch(self, model, label, scale):
        def optimized_attention_override(func, *args, **kwargs):
            CALLS[label] += 1
            return func(*args, **kwargs) * scale

        m = model.clone()
        m.model_options["transformer_options"]["optimized_attention_override"] = optimized_attention_override
        return (m,)


NODE_CLASS_MAPPINGS = {"DSAProbeAttentionOverride": DSAProbeAttentionOverride}


def _routes():
    try:
        from aiohttp import web
        from server import PromptServer
    except Exception:
        return
    routes = getattr(PromptServer.instance, "routes", None)
    if routes is None:
        return

    @routes.get("/dsa_probe/calls")
    async def calls(request):
        return web.json_response(dict(CALLS))

    @routes.post("/dsa_probe/reset")
    async def reset(request):
        CALLS.clear()
        return web.json_response({})


_routes()
