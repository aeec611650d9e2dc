"""Joint training (reconstruction): Self-Forcing-style data-free DMD for the causal generator, plus DSA's
confidence head trained on the generator's own rollouts.

One iteration (all choices below are this project's reconstruction; the paper publishes only its abstract):

1. Prompts only (no videos). Roll the student out chunk by chunk through its KV cache (rollout.py) on
   the training ladder; each chunk exits at a random step (uniform over the ladder's levels; one exit for
   all chunks with ``same_exit=True`` as in Self-Forcing's default, else one per chunk). Only the exit
   step carries gradients.
2. DMD (DMD2 / Self-Forcing form). Re-noise the generated video x at s (u ~ U[0.02, 0.98] warped through
   ``dmd_shift``): x_s = (1-s) x + s eps. Real score: the frozen bidirectional teacher's x0 prediction
   (optionally with classifier-free guidance against the all-zero context). Fake score: the critic's x0
   prediction. grad = (pred_fake - pred_real) / mean|x - pred_real| (per sample); generator loss =
   0.5 ||x - sg(x - grad)||^2 (mean). The generator steps every ``gen_every``-th iteration.
3. Critic: flow-matching loss on the detached generated video (every iteration).
4. Head: at each chunk's exit step the head reads the generator's pooled hidden states and timestep
   embedding, DETACHED (no gradient from the head into the generator); its target is switchable
   (targets.py): 'teacher_residual' (default): d = ||x - pred_real||_frame, the real-score half of the DMD
   gradient, read on the generated video re-noised to a fixed low level ``head_sigma`` (default 0.15, one
   extra no-grad teacher forward); 'dmd_grad': d = ||pred_fake - pred_real||_frame at the same level (two
   extra forwards; None reuses the DMD's random s); or 'x0_agreement' (the rollout then continues each
   chunk to the last level without gradient); or 'teacher_gain' (the same continuation, then d = the
   teacher_residual of the exit output minus that of the last step's output, at head_sigma with one shared
   draw: the benefit of the remaining steps as the teacher judges it). d becomes a label in [0, 1] by its
   rank among recent frames (``target_label='rank'``, default) or another label of targets.py. Loss: BCE
   between the head's logits and the label.

Distributed: the three objectives are nn.Modules wrapped in DistributedDataParallel under torchrun
(distributed.py); ranks draw different prompts and noise (seed + rank); rank 0 saves.
Checkpoints: checkpointing.py (safetensors + JSON; exact resume).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..causal_wan import CausalWan
from ..confidence_head import ConfidenceHead
from ..flow_step import renoise
from ..schedules import Ladder, extended_ladder, self_forcing_ladder
from . import distributed as D
from .checkpointing import load_training_state, save_training_state
from .flow import FlowMatchObjective, sample_sigmas, x0_prediction
from .progress import progress
from .rollout import randn_fn, rollout
from .targets import (
    HeadTarget,
    dmd_grad_distance,
    teacher_gain_distance,
    teacher_residual_distance,
    x0_agreement_distance,
)


@dataclass
class DMDConfig:
    num_frames: int = 9
    chunk_frames: int = 3
    latent_h: int = 8
    latent_w: int = 8
    batch: int = 4  # per rank
    max_steps: int = 4  # training ladder: Self-Forcing's 4 levels, extended beyond 4
    same_exit: bool = False  # one random exit step for all chunks (Self-Forcing default) or per chunk
    gen_lr: float = 2e-5
    critic_lr: float = 4e-5
    head_lr: float = 1e-3
    betas: tuple = (0.0, 0.999)  # DMD2 / Self-Forcing use beta1 = 0 for generator and critic
    weight_decay: float = 0.0
    gen_every: int = 5  # generator update every N iterations (critic every iteration)
    grad_clip: float = 10.0
    dmd_shift: float = 5.0
    dmd_u_range: tuple = (0.02, 0.98)
    critic_shift: float = 5.0
    real_guidance: float = 1.0  # teacher CFG scale in the real score (1 = no CFG)
    target: str = "teacher_residual"
    target_label: str = "rank"  # 'rank', 'step_rank', 'exp2' or 'tolerance' (targets.py)
    target_window: int = 2048
    target_tau: float | None = None  # fixed tau for the 'exp2' label instead of the running median
    head_sigma: float | None = 0.15  # the head targets' teacher reads at this fixed re-noising level
    # (None: teacher_residual / dmd_grad use the DMD's random s, whose spread then dominates the label;
    # teacher_gain needs a fixed level)
    seed: int = 0
    amp: bool = False  # bf16 autocast (CUDA)

    def __post_init__(self):
        if self.target == "teacher_gain" and self.head_sigma is None:
            raise ValueError(
                "the teacher_gain head target compares two teacher reads at one fixed re-noising level; "
                "set head_sigma (e.g. 0.15, the default) instead of None"
            )

    def ladder(self) -> Ladder:
        return extended_ladder(self_forcing_ladder(), self.max_steps)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"], d["dmd_u_range"] = list(self.betas), list(self.dmd_u_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DMDConfig":
        d = dict(d)
        for k in ("betas", "dmd_u_range"):
            if k in d:
                d[k] = tuple(d[k])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


class GeneratorObjective(nn.Module):
    """Rollout + DMD loss in one forward (so DDP can wrap the generator). Teacher and critic are held
    outside the module tree (plain list) so DDP never syncs them through this wrapper."""

    def __init__(self, student: nn.Module, teacher: nn.Module, critic: nn.Module, cfg: DMDConfig):
        super().__init__()
        self.dit = student
        self.cw = CausalWan(student, student.config)
        self._others = [CausalWan(teacher, teacher.config), CausalWan(critic, critic.config)]
        self.cfg = cfg

    @torch.no_grad()
    def dmd_direction(self, x: Tensor, context: Tensor, s: Tensor, eps: Tensor, real_only: bool = False):
        """(pred_fake, pred_real) x0 predictions on x re-noised to s with eps (no gradient); pred_fake is
        None with ``real_only`` (the teacher_residual head target needs only the teacher)."""
        teacher, critic = self._others
        x_s = renoise(x, eps, s)
        pred_real = x0_prediction(teacher, x_s, s, teacher.encode_text(context))
        if self.cfg.real_guidance != 1.0:
            unc = x0_prediction(teacher, x_s, s, teacher.encode_text(torch.zeros_like(context)))
            pred_real = unc + self.cfg.real_guidance * (pred_real - unc)
        if real_only:
            return None, pred_real
        pred_fake = x0_prediction(critic, x_s, s, critic.encode_text(context))
        return pred_fake, pred_real

    def forward(
        self,
        context: Tensor,
        exit_steps: list,
        noise,
        s: Tensor,
        eps_fn,
        grad: bool = True,
        continue_to: int | None = None,
    ):
        cfg = self.cfg
        b = context.shape[0]
        with torch.set_grad_enabled(grad):
            text = self.cw.encode_text(context)
        ro = rollout(
            self.cw,
            text,
            batch=b,
            num_frames=cfg.num_frames,
            chunk_frames=cfg.chunk_frames,
            latent_h=cfg.latent_h,
            latent_w=cfg.latent_w,
            ladder=cfg.ladder(),
            exit_steps=exit_steps,
            noise=noise,
            grad=grad,
            continue_to=continue_to,
            device=context.device,
        )
        x = ro.video
        eps = eps_fn(tuple(x.shape))
        with torch.no_grad():
            xd = x.detach()
            pred_fake, pred_real = self.dmd_direction(xd, context, s, eps)
            norm = (xd - pred_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-8)
            g = torch.nan_to_num((pred_fake - pred_real) / norm)
        loss = 0.5 * F.mse_loss(x.float(), (x.detach() - g).float())
        return loss, ro, pred_fake, pred_real


class HeadObjective(nn.Module):
    def __init__(self, head: ConfidenceHead):
        super().__init__()
        self.head = head

    def forward(self, hidden: Tensor, time_emb: Tensor, target: Tensor) -> Tensor:
        logits = self.head.logits(hidden, time_emb).float()
        return F.binary_cross_entropy_with_logits(logits, target.float())


def _adam(params, lr, betas, wd):
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, betas=tuple(betas), weight_decay=wd)


class DMDTrainer:
    """Joint DMD + confidence-head trainer. ``teacher`` is frozen; ``critic`` defaults to a copy of it;
    ``student`` is trained (a causal generator initialised e.g. from the teacher)."""

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        head: ConfidenceHead,
        cfg: DMDConfig,
        prompts,
        critic: nn.Module | None = None,
        env: D.DistEnv | None = None,
    ):
        self.cfg, self.prompts = cfg, prompts
        self.env = env or D.DistEnv()
        dev = self.env.device
        self.teacher = teacher.to(dev).eval().requires_grad_(False)
        self.student = student.to(dev).train().requires_grad_(True)
        self.critic = (critic if critic is not None else copy.deepcopy(teacher)).to(dev).train().requires_grad_(True)
        self.head = head.to(dev).train().requires_grad_(True)
        self.gen_obj = D.wrap(GeneratorObjective(self.student, self.teacher, self.critic, cfg), self.env)
        self.critic_obj = D.wrap(FlowMatchObjective(self.critic), self.env)
        self.head_obj = D.wrap(HeadObjective(self.head), self.env)
        self.opt_gen = _adam(self.student.parameters(), cfg.gen_lr, cfg.betas, cfg.weight_decay)
        self.opt_critic = _adam(self.critic.parameters(), cfg.critic_lr, cfg.betas, cfg.weight_decay)
        self.opt_head = _adam(self.head.parameters(), cfg.head_lr, (0.9, 0.999), 0.0)
        self.target = HeadTarget(cfg.target, cfg.target_window, cfg.target_tau, cfg.target_label)
        self.g = torch.Generator().manual_seed(cfg.seed * 1000003 + self.env.rank)
        self.step = 0
        self.history: dict[str, list] = {
            "gen_loss": [],
            "critic_loss": [],
            "head_loss": [],
            "head_excess": [],
            "dmd_grad_rms": [],
            "tau": [],
            "gen_step": [],
        }
        self.ladder = cfg.ladder()

    # ---- one iteration ----------------------------------------------------------------------------
    def _exit_steps(self) -> list[int]:
        n = self.cfg.num_frames // self.cfg.chunk_frames
        if self.cfg.same_exit:
            return [int(torch.randint(len(self.ladder), (1,), generator=self.g))] * n
        return [int(v) for v in torch.randint(len(self.ladder), (n,), generator=self.g)]

    def _autocast(self):
        if self.cfg.amp and self.env.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    def train_step(self) -> dict:
        cfg, dev, g = self.cfg, self.env.device, self.g
        ctx = self.prompts(cfg.batch, g).to(dev)
        exits = self._exit_steps()
        s = sample_sigmas((cfg.batch,), g, *cfg.dmd_u_range, shift=cfg.dmd_shift).to(dev)
        noise = randn_fn(g, dev)
        gen_step = self.step % cfg.gen_every == 0
        cont = len(self.ladder) if cfg.target in ("x0_agreement", "teacher_gain") else None
        out = {}
        # 1-2: rollout + DMD (generator update on gen steps)
        with self._autocast():
            if gen_step:
                loss, ro, pf, pr = self.gen_obj(ctx, exits, noise, s, noise, True, cont)
            else:
                with torch.no_grad():
                    loss, ro, pf, pr = D.unwrap(self.gen_obj)(ctx, exits, noise, s, noise, False, cont)
        if gen_step:
            self.opt_gen.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.student.parameters(), cfg.grad_clip)
            self.opt_gen.step()
            out["gen_loss"] = float(loss.detach())
        video = ro.video.detach()
        # 3: critic on the generated video
        s_c = sample_sigmas((cfg.batch,), g, 0.0, 1.0, shift=cfg.critic_shift).to(dev)
        eps_c = noise(tuple(video.shape))
        with self._autocast():
            c_loss = self.critic_obj(video, ctx, s_c, eps_c)
        self.opt_critic.zero_grad(set_to_none=True)
        c_loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip)
        self.opt_critic.step()
        out["critic_loss"] = float(c_loss.detach())
        # 4: head on the exit step (detached features)
        if cfg.target in ("dmd_grad", "teacher_residual"):
            if cfg.head_sigma is not None:  # a fixed level: the label does not inherit the DMD's random s
                hs = torch.full((cfg.batch,), float(cfg.head_sigma), device=dev)
                with self._autocast():
                    pf, pr = D.unwrap(self.gen_obj).dmd_direction(
                        video, ctx, hs, noise(tuple(video.shape)), real_only=cfg.target == "teacher_residual"
                    )
            dist = dmd_grad_distance(pf, pr) if cfg.target == "dmd_grad" else teacher_residual_distance(video, pr)
        elif cfg.target == "teacher_gain":
            hs = torch.full((cfg.batch,), float(cfg.head_sigma), device=dev)
            eps_h = noise(tuple(video.shape))
            final = ro.final_x0.detach()
            with self._autocast():
                gen = D.unwrap(self.gen_obj)
                _, pr_k = gen.dmd_direction(video, ctx, hs, eps_h, real_only=True)
                _, pr_f = gen.dmd_direction(final, ctx, hs, eps_h, real_only=True)
            dist = teacher_gain_distance(video, pr_k, final, pr_f)
            # the teacher reads the whole video, so other chunks' changes leak into a frame's value; a frame
            # that exited at the last step has nothing left to gain by definition
            unchanged = (video - final).abs().amax(dim=(1, 3, 4)) == 0
            dist = torch.where(unchanged, torch.zeros_like(dist), dist)
        else:
            dist = x0_agreement_distance(video, ro.final_x0)
        steps = torch.tensor(exits).repeat_interleave(cfg.chunk_frames)[None].expand(dist.shape[0], -1)
        all_d = torch.tensor(D.gather_floats(dist.flatten().tolist(), self.env))
        all_k = torch.tensor(D.gather_floats(steps.flatten().float().tolist(), self.env)).long()
        self.target.update(all_d, all_k)
        label = self.target.label(dist.to(dev), update=False, steps=steps.to(dev))
        h_loss = self.head_obj(ro.exit_hidden.float(), ro.exit_time_emb.float(), label)
        self.opt_head.zero_grad(set_to_none=True)
        h_loss.backward()
        self.opt_head.step()
        out["head_loss"] = float(h_loss.detach())
        # BCE minus the labels' own entropy: the part the head can still remove (>= 0; its floor is 0
        # whatever the label spread, unlike the BCE itself under soft labels)
        lab = label.float().clamp(1e-6, 1 - 1e-6)
        out["head_excess"] = float(h_loss.detach()) - float(-(lab * lab.log() + (1 - lab) * (1 - lab).log()).mean())
        out["dmd_grad_rms"] = float(dist.mean())
        out["tau"] = self.target.scale.tau
        self.step += 1
        for k, v in out.items():
            self.history[k].append(v)
        if gen_step:
            self.history["gen_step"].append(self.step - 1)
        return out

    def train(
        self,
        steps: int,
        ckpt_dir=None,
        ckpt_every: int = 0,
        show_progress: bool = True,
        log_every: int = 10,
        time_limit_s: float | None = None,
    ) -> dict:
        """Run until ``self.step == steps`` (so a resumed trainer continues to the same total)."""
        t0 = time.time()
        bar = progress(
            total=steps, desc="DMD+head", disable=not (show_progress and self.env.is_main), initial=self.step
        )
        try:
            while self.step < steps:
                out = self.train_step()
                bar.update(1)
                if self.step % log_every == 0 or self.step == steps:
                    h = self.history
                    gl = h["gen_loss"][-1] if h["gen_loss"] else float("nan")
                    bar.set_postfix_str(
                        f"gen {gl:.4f} critic {out['critic_loss']:.4f} head {out['head_loss']:.4f} "
                        f"dmd {out['dmd_grad_rms']:.4f}"
                    )
                if ckpt_dir and ckpt_every and self.step % ckpt_every == 0:
                    self.save(Path(ckpt_dir) / "latest.safetensors")
                if time_limit_s and time.time() - t0 > time_limit_s:
                    break
        finally:
            bar.close()
        if ckpt_dir:
            self.save(Path(ckpt_dir) / "latest.safetensors")
        return self.history

    # ---- checkpoints ------------------------------------------------------------------------------
    def save(self, path) -> None:
        if not self.env.is_main:
            D.barrier(self.env)
            return
        save_training_state(
            path,
            step=self.step,
            modules={"student": self.student, "critic": self.critic, "head": self.head},
            optimizers={"gen": self.opt_gen, "critic": self.opt_critic, "head": self.opt_head},
            generators={"main": self.g},
            extra_tensors={"target_window": self.target.state_tensor()},
            info={
                "kind": "dmd",
                "config": self.cfg.to_dict(),
                "history": self.history,
                "head_config": self.head.config.to_json(),
                "generator_config": self.student.config.to_json(),
            },
        )
        D.barrier(self.env)

    def load(self, path) -> None:
        st = load_training_state(path)
        if st.info.get("kind") != "dmd":
            raise ValueError(f"{path} is a '{st.info.get('kind')}' checkpoint, not a DMD one")
        for name, mod in (("student", self.student), ("critic", self.critic), ("head", self.head)):
            st.load_module(name, mod)
        for name, opt in (("gen", self.opt_gen), ("critic", self.opt_critic), ("head", self.opt_head)):
            st.load_optimizer(name, opt)
        if self.env.world_size == 1:
            st.load_generator("main", self.g)
        else:  # each rank has its own stream: re-derive from the seed and step
            self.g.manual_seed(self.cfg.seed * 1000003 + self.env.rank + 7919 * st.step)
        self.target.load_state_tensor(st.extra("target_window"))
        self.step = st.step
        self.history = {k: list(v) for k, v in st.info.get("history", {}).items()} or self.history
