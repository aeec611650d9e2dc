"""The denoising-step maths (dsa_core/flow_step.py): its algebra, its precision rule, and that it is the only copy."""

import re
from pathlib import Path

import pytest
import torch

from dsa_core.flow_step import denoise, euler_step, renoise

ROOT = Path(__file__).resolve().parents[2]


def _tensors(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(2, 16, 3, 4, 6, generator=g).to(dtype)
    eps = torch.randn(2, 16, 3, 4, 6, generator=g)
    return x0, eps


def test_denoise_inverts_renoise_with_the_true_flow():
    x0, eps = _tensors(torch.float64)
    for s in (
        1.0,
        0.9375,
        0.25,
        torch.tensor([0.8, 0.3], dtype=torch.float64),
        torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.6, 1.0]], dtype=torch.float64),
    ):
        x_s = renoise(x0, eps.double(), s)
        torch.testing.assert_close(denoise(x_s, eps.double() - x0, s), x0, rtol=0, atol=1e-12)


def test_euler_step_is_denoise_then_renoise_along_the_predicted_noise():
    x0, eps = _tensors(torch.float64)
    x = renoise(x0, eps.double(), 0.75)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x0_hat = denoise(x, v, 0.75)
    eps_hat = x0_hat + v  # v = eps - x0
    torch.testing.assert_close(euler_step(x, v, 0.75, 0.5), renoise(x0_hat, eps_hat, 0.5), rtol=0, atol=1e-12)


def test_precision_rule_float64_difference_float32_blend():
    x, v = _tensors(torch.float32, seed=1)
    s = 0.9375
    want = (x.double() - s * v.double()).float()
    assert torch.equal(denoise(x, v, s), want)  # the correctly rounded float32 of the exact difference
    assert not torch.equal(want, x - s * v)  # a float32 difference would round differently somewhere
    xb = x.bfloat16()
    out = denoise(xb, v.bfloat16(), s)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, (xb.double() - s * v.bfloat16().double()).bfloat16())
    blend = renoise(xb, v, 0.5)  # bf16 x0, float32 noise: blended in float32, returned in bf16
    assert blend.dtype == torch.bfloat16 and torch.equal(blend, (0.5 * xb.float() + 0.5 * v).bfloat16())


def test_steps_keep_autograd():
    x, v = _tensors(torch.float32, seed=2)
    v.requires_grad_(True)
    x0 = denoise(x, v, 0.5)
    renoise(x0, torch.zeros_like(x0), 0.25).sum().backward()
    torch.testing.assert_close(v.grad, torch.full_like(v, -0.5 * 0.75))


@pytest.mark.parametrize("folder", ["dsa_core", "nodes", "benchmarks"])
def test_no_other_copy_of_the_step_maths(folder):
    """Arithmetic on a model's flow output happens only in flow_step.py."""
    pattern = re.compile(r"[-+*]\s*[\w\]\)]*\.flow\b|\.flow\b(\.\w+\(\))*\s*[-+*/]")
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path.name == "flow_step.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line.split("#")[0]):
                found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not found, "step maths outside dsa_core/flow_step.py:\n" + "\n".join(found)
