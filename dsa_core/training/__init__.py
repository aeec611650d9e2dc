"""DSA training (reconstruction; the paper publishes only its abstract).

- ``dmd``: joint Self-Forcing-style DMD for the causal generator + the confidence head
  (CLI: ``python -m dsa_core.training.train_dmd``)
- ``calibrate``: head-only calibration for a frozen AR generator
  (CLI: ``python -m dsa_core.training.calibrate_head``)
- ``targets``: the switchable head targets ('teacher_residual', 'dmd_grad', 'x0_agreement', 'teacher_gain')
- ``rollout``: training rollouts through the KV cache (gradient through the exit step only)
- ``flow``: flow-matching helpers; ``prompts``: prompt sources; ``distributed``: torch.distributed / DDP;
  ``checkpointing``: safetensors + JSON training state (exact resume); ``export``: generator + head files.
"""
