"""Head-only calibration for a frozen AR generator (reconstruction; for users of public Self-Forcing /
CausVid checkpoints, for which no DSA head is published).

1. Rollouts: the frozen generator generates videos from prompt embeddings, every chunk walking the whole
   extended ladder (max_steps levels, e.g. Self-Forcing's 4 plus 2 lower ones), recording after each step
   the pooled hidden states, the timestep embedding and x0_hat. Each chunk is committed to the cache with
   the x0_hat of a random step (``commit='random'``, default) so that later chunks see contexts of the
   quality an adaptive sampler produces, or of the last step (``commit='final'``).
2. Target 'x0_agreement' (targets.py): c* = 2^(-RMS_frame(x0_hat_k - x0_hat_last) / tau), tau from the
   median of those distances over the whole rollout set (zeros of the last step excluded) such that a
   median distance is labelled ``median_label`` (default 0.5: tau = median), or a fixed ``tau``.
3. The head (the only trainable part) is trained with BCE for ``epochs`` passes over the recorded features.
The generator is never updated; rollouts run under no_grad.

The result is a head file (confidence_head.save_head) that confidence_head.load_head accepts, with the
target, tau, ladder and prompt count in its metadata.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..causal_wan import CausalWan
from ..confidence_head import ConfidenceHead, HeadConfig, save_head
from ..schedules import extended_ladder, self_forcing_ladder
from . import distributed as D
from .checkpointing import load_training_state, save_training_state
from .dmd import HeadObjective
from .progress import progress
from .rollout import randn_fn, rollout
from .targets import DEFAULT_TOLERANCE, RunningScale, confidence_label, rank_within_step, x0_agreement_distance


@dataclass
class CalibConfig:
    num_frames: int = 9
    chunk_frames: int = 3
    latent_h: int = 8
    latent_w: int = 8
    batch: int = 4
    rollouts: int = 8  # rollout batches per rank
    max_steps: int = 6
    commit: str = "random"  # 'random' | 'final'
    epochs: int = 200
    minibatch: int = 256  # frames per head update
    lr: float = 2e-3
    hidden_dim: int = 256
    target: str = "x0_agreement"
    tau: float | None = None
    median_label: float = 0.5  # the label a median distance gets: tau = median / log2(1 / median_label)
    label: str = "exp2"  # 'exp2', 'step_rank' (rank among frames at the same step) or 'tolerance'
    # (1 if d <= tau, tau default targets.DEFAULT_TOLERANCE), targets.py
    seed: int = 0

    def to_dict(self):
        return asdict(self)


@dataclass
class CalibData:
    hidden: Tensor  # [N, dim] per frame-step
    time_emb: Tensor  # [N, dim]
    distance: Tensor  # [N]
    step: Tensor  # [N] 0-based step index


@torch.no_grad()
def collect(cw: CausalWan, prompts, cfg: CalibConfig, g: torch.Generator, device, show_progress=True) -> CalibData:
    if cfg.target != "x0_agreement":
        raise ValueError(
            "head-only calibration supports the 'x0_agreement' target (the 'dmd_grad' target needs "
            "the teacher and critic of joint training: use train_dmd)"
        )
    ladder = extended_ladder(self_forcing_ladder(), cfg.max_steps)
    n_chunks = cfg.num_frames // cfg.chunk_frames
    hs, ts, ds, ks = [], [], [], []
    bar = progress(total=cfg.rollouts, desc="calibration rollouts", disable=not show_progress)
    for _ in range(cfg.rollouts):
        ctx = prompts(cfg.batch, g).to(device)
        text = cw.encode_text(ctx)
        exits = (
            [int(v) for v in torch.randint(len(ladder), (n_chunks,), generator=g)]
            if cfg.commit == "random"
            else [len(ladder) - 1] * n_chunks
        )
        ro = rollout(
            cw,
            text,
            batch=cfg.batch,
            num_frames=cfg.num_frames,
            chunk_frames=cfg.chunk_frames,
            latent_h=cfg.latent_h,
            latent_w=cfg.latent_w,
            ladder=ladder,
            exit_steps=exits,
            noise=randn_fn(g, device),
            grad=False,
            continue_to=len(ladder),
            record_steps=True,
            commit="exit",
            device=device,
        )
        for recs in ro.steps:
            final = recs[-1].x0
            for k, r in enumerate(recs):
                d = x0_agreement_distance(r.x0, final)  # [B, Tc]
                hs.append(r.hidden.float().flatten(0, 1).cpu())
                ts.append(r.time_emb.float().flatten(0, 1).cpu())
                ds.append(d.flatten().cpu())
                ks.append(torch.full((d.numel(),), k))
        bar.update(1)
    bar.close()
    return CalibData(torch.cat(hs), torch.cat(ts), torch.cat(ds), torch.cat(ks))


class HeadCalibrator:
    def __init__(
        self,
        generator: nn.Module,
        cfg: CalibConfig,
        prompts,
        head: ConfidenceHead | None = None,
        env: D.DistEnv | None = None,
    ):
        self.cfg, self.prompts = cfg, prompts
        self.env = env or D.DistEnv()
        dev = self.env.device
        self.generator = generator.to(dev).eval().requires_grad_(False)
        self.cw = CausalWan(self.generator, self.generator.config)
        if head is None:  # initialised from the run's seed, not from whatever the global RNG holds
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                head = ConfidenceHead(HeadConfig(dim=generator.config.dim, hidden_dim=cfg.hidden_dim))
        self.head = head.to(dev)
        self.head.train().requires_grad_(True)
        self.head_obj = D.wrap(HeadObjective(self.head), self.env)
        self.opt = torch.optim.AdamW(self.head.parameters(), lr=cfg.lr, weight_decay=1e-4)
        self.g = torch.Generator().manual_seed(cfg.seed * 1000003 + self.env.rank)
        self.data: CalibData | None = None
        self.scale = RunningScale(window=10**9, fixed=cfg.tau)
        self.epoch = 0
        self.history: dict[str, list] = {"head_loss": []}

    def collect(self, show_progress=True) -> CalibData:
        self.data = collect(
            self.cw, self.prompts, self.cfg, self.g, self.env.device, show_progress and self.env.is_main
        )
        d = torch.tensor(D.gather_floats(self.data.distance.tolist(), self.env))
        self.scale.update(d)
        return self.data

    @property
    def tau(self) -> float:
        """The label temperature: fixed, or the median distance scaled so it is labelled ``median_label``."""
        if self.cfg.tau is not None:
            return float(self.cfg.tau)
        if self.cfg.label == "tolerance":
            return DEFAULT_TOLERANCE
        return self.scale.tau / math.log2(1.0 / self.cfg.median_label)

    def labels(self) -> Tensor:
        if self.cfg.label == "step_rank":
            return rank_within_step(self.data.distance, self.data.step)
        if self.cfg.label == "tolerance":
            return (self.data.distance <= self.tau).float()
        if self.cfg.label != "exp2":
            raise ValueError(f"unknown calibration label {self.cfg.label!r}; choose 'exp2', 'step_rank' or 'tolerance'")
        return confidence_label(self.data.distance, self.tau)

    def train(self, epochs: int | None = None, show_progress=True, ckpt_path=None) -> dict:
        if self.data is None:
            self.collect(show_progress)
        epochs = self.cfg.epochs if epochs is None else epochs
        data, dev = self.data, self.env.device
        y = self.labels()
        n = y.numel()
        bar = progress(
            total=epochs, desc="head calibration", disable=not (show_progress and self.env.is_main), initial=self.epoch
        )
        while self.epoch < epochs:
            perm = torch.randperm(n, generator=self.g)
            tot, cnt = 0.0, 0
            for i in range(0, n, self.cfg.minibatch):
                idx = perm[i : i + self.cfg.minibatch]
                loss = self.head_obj(
                    data.hidden[idx, None].to(dev), data.time_emb[idx, None].to(dev), y[idx, None].to(dev)
                )
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                tot += float(loss.detach()) * idx.numel()
                cnt += idx.numel()
            self.history["head_loss"].append(tot / cnt)
            self.epoch += 1
            bar.update(1)
            bar.set_postfix_str(f"bce {tot / cnt:.4f} tau {self.tau:.4f}")
        bar.close()
        if ckpt_path:
            self.save_state(ckpt_path)
        return self.history

    # ---- outputs ----------------------------------------------------------------------------------
    def metadata(self) -> dict:
        return {
            "dsa.training": "head-only calibration (reconstruction)",
            "dsa.target": self.cfg.target,
            "dsa.target_tau": f"{self.tau:.6g}",
            "dsa.median_label": str(self.cfg.median_label),
            "dsa.calib_config": str(self.cfg.to_dict()),
            "dsa.generator_config": self.generator.config.to_json(),
        }

    def save_head(self, path) -> None:
        if self.env.is_main:
            save_head(self.head, path, self.metadata())
        D.barrier(self.env)

    def save_state(self, path) -> None:
        """Resumable state: head, optimizer, rng, the recorded features (they are small) and the epoch."""
        if self.env.is_main:
            d = self.data
            save_training_state(
                path,
                step=self.epoch,
                modules={"head": self.head},
                optimizers={"head": self.opt},
                generators={"main": self.g},
                extra_tensors={
                    "hidden": d.hidden,
                    "time_emb": d.time_emb,
                    "distance": d.distance,
                    "step": d.step,
                    "scale": self.scale.state_tensor(),
                },
                info={
                    "kind": "calibration",
                    "config": self.cfg.to_dict(),
                    "history": self.history,
                    "head_config": self.head.config.to_json(),
                },
            )
        D.barrier(self.env)

    def load_state(self, path) -> None:
        st = load_training_state(path)
        if st.info.get("kind") != "calibration":
            raise ValueError(f"{path} is not a calibration checkpoint")
        st.load_module("head", self.head)
        st.load_optimizer("head", self.opt)
        st.load_generator("main", self.g)
        self.data = CalibData(st.extra("hidden"), st.extra("time_emb"), st.extra("distance"), st.extra("step"))
        self.scale.load_state_tensor(st.extra("scale"))
        self.epoch = st.step
        self.history = {k: list(v) for k, v in st.info.get("history", {}).items()}
