"""DSA's confidence head: one confidence in [0, 1] per latent frame, read after every denoising step.

Input (reconstruction, docs/method.md): the generator's last hidden states of the chunk (after the last
block, before the output head) mean-pooled per latent frame, plus the step's timestep embedding (Wan's
``time_embedding`` output for that frame), both LayerNorm'd without affine parameters (the hidden
state's and the embedding's scales differ by orders of magnitude and drift during training), concatenated,
then a 3-layer SiLU MLP and a sigmoid. About 0.85 M parameters at the 1.3B shape (< 0.1 % of the
generator) and a few hundred kFLOPs per frame: negligible next to one generator step.

Files: safetensors, keys under ``confidence_head.`` (so a generator file and a head file can be shipped
separately or merged), the HeadConfig as JSON in the metadata under ``dsa.head_config``, and the head's
calibration table (what each threshold costs, calibration.py) under ``dsa.calibration`` when it was measured:
a loaded head carries it as ``head.calibration`` (None without one).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from .calibration import META_HEAD, table_from_metadata
from .checkpoint_keys import HEAD_PREFIX, CheckpointError, head_keys, looks_like_generator, refuse_pickle, require_file
from .safe_write import write_safetensors

META_CONFIG = "dsa.head_config"
META_FORMAT = "dsa.format"
FORMAT_NAME = "dsa-confidence-head"


@dataclass(frozen=True)
class HeadConfig:
    dim: int  # generator hidden size (1536 for Wan 2.1 1.3B)
    hidden_dim: int = 256
    time_dim: int | None = None  # timestep embedding size; None = dim (Wan's time_embedding is dim wide)
    version: int = 1

    def __post_init__(self):
        if self.time_dim is None:
            object.__setattr__(self, "time_dim", self.dim)
        if self.dim < 1 or self.hidden_dim < 1 or self.time_dim < 1:
            raise ValueError(f"head sizes must be positive: {self}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "HeadConfig":
        d = json.loads(text)
        known = {k: d[k] for k in ("dim", "hidden_dim", "time_dim", "version") if k in d}
        return cls(**known)


class ConfidenceHead(nn.Module):
    def __init__(self, config: HeadConfig | int, device=None, dtype=None):
        super().__init__()
        if isinstance(config, int):
            config = HeadConfig(dim=config)
        self.config = config
        self.calibration = None  # calibration.CalibrationTable of this head, when its file holds one
        kw = {"device": device, "dtype": dtype}
        self.fc1 = nn.Linear(config.dim + config.time_dim, config.hidden_dim, **kw)
        self.fc2 = nn.Linear(config.hidden_dim, config.hidden_dim, **kw)
        self.out = nn.Linear(config.hidden_dim, 1, **kw)

    def logits(self, hidden: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores [B, T] (for training with BCE-with-logits).

        hidden: [B, T, dim] pooled per latent frame; time_emb: [B, T, time_dim] or [B, time_dim].
        """
        c = self.config
        if hidden.shape[-1] != c.dim:
            raise ValueError(
                f"confidence head expects hidden size {c.dim}, got {hidden.shape[-1]} "
                "(the head was made for a different generator)"
            )
        if time_emb.dim() == 2:
            time_emb = time_emb[:, None, :].expand(-1, hidden.shape[1], -1)
        if time_emb.shape[-1] != c.time_dim:
            raise ValueError(
                f"confidence head expects a timestep embedding of size {c.time_dim}, got {time_emb.shape[-1]}"
            )
        w = self.fc1.weight
        h = F.layer_norm(hidden.to(w.dtype), (c.dim,))
        t = F.layer_norm(time_emb.to(w.dtype), (c.time_dim,))
        x = F.silu(self.fc1(torch.cat([h, t], dim=-1)))
        x = F.silu(self.fc2(x))
        return self.out(x).squeeze(-1)

    def forward(self, hidden: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        """Confidence [B, T] in [0, 1], float32."""
        return torch.sigmoid(self.logits(hidden, time_emb).float())

    def check_generator(self, generator_config) -> None:
        """Raise a clear error if this head does not match a generator's WanConfig."""
        if generator_config.dim != self.config.dim:
            raise CheckpointError(
                f"this confidence head was trained for a generator with dim {self.config.dim}, "
                f"but the model has dim {generator_config.dim}; load the head made for this model"
            )


def head_state_dict(head: ConfidenceHead) -> dict:
    """The head's weights under the ``confidence_head.`` prefix, contiguous on CPU."""
    return {HEAD_PREFIX + k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}


def save_head(head: ConfidenceHead, path: str | os.PathLike, extra_metadata: dict | None = None) -> None:
    meta = {META_FORMAT: FORMAT_NAME, META_CONFIG: head.config.to_json()}
    meta.update({str(k): str(v) for k, v in (extra_metadata or {}).items()})
    write_safetensors(head_state_dict(head), path, metadata=meta)


def head_from_state_dict(
    sd: dict,
    metadata: dict | None = None,
    *,
    expected_dim: int | None = None,
    device=None,
    dtype=torch.float32,
    source: str = "state dict",
) -> ConfidenceHead:
    """Build a head from a state dict holding ``confidence_head.*`` keys (alone or next to a generator's).

    The config comes from the metadata when present, otherwise from the weight shapes (time_dim = dim).
    """
    head_sd = {hk: sd[k] for k, hk in head_keys(sd.keys()).items()}
    if not head_sd:
        if looks_like_generator(sd.keys()):
            raise CheckpointError(
                f"{source} is a generator checkpoint (Wan DiT weights) without a confidence head: load it as "
                "the model, and load the confidence head from its own file (keys 'confidence_head.*')"
            )
        raise CheckpointError(f"{source} has no confidence head weights (no keys starting with '{HEAD_PREFIX}')")
    metadata = metadata or {}
    if META_CONFIG in metadata:
        try:
            config = HeadConfig.from_json(metadata[META_CONFIG])
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{source}: invalid '{META_CONFIG}' metadata ({e})") from None
    else:
        try:
            w1 = head_sd["fc1.weight"]
        except KeyError:
            raise CheckpointError(
                f"{source}: confidence head weights lack 'fc1.weight'; keys: {sorted(head_sd)[:8]}"
            ) from None
        dim = w1.shape[1] // 2
        config = HeadConfig(dim=dim, hidden_dim=w1.shape[0], time_dim=w1.shape[1] - dim)
    if expected_dim is not None and config.dim != expected_dim:
        raise CheckpointError(
            f"{source}: this confidence head was trained for a generator with dim {config.dim}, but the model "
            f"has dim {expected_dim}; load the head made for this model"
        )
    head = ConfidenceHead(config, device=device, dtype=dtype)
    try:
        head.load_state_dict(head_sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{source}: confidence head weights do not match its config {config}: {e}") from None
    try:
        head.calibration = table_from_metadata(metadata, META_HEAD)
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from None
    return head.eval().requires_grad_(False)


def load_head(
    path: str | os.PathLike, *, expected_dim: int | None = None, device=None, dtype=torch.float32
) -> ConfidenceHead:
    """Load a head file, or the head inside a combined generator+head safetensors file (only the head's
    tensors are read). ``expected_dim`` (the generator's dim) turns a mismatch into a clear error."""
    path = require_file(path)
    name = os.path.basename(path)
    refuse_pickle(path)
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            keys = list(f.keys())
            wanted = head_keys(keys)
            sd = {k: f.get_tensor(k) for k in wanted} if wanted else dict.fromkeys(keys)
    except Exception as e:
        raise CheckpointError(f"could not read {path}: the file is truncated or corrupted ({e})") from e
    return head_from_state_dict(sd, metadata, expected_dim=expected_dim, device=device, dtype=dtype, source=name)
