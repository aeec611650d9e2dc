"""DSA core: pure-PyTorch causal Wan 2.1 generator, KV cache and checkpoints (never imports comfy)."""
