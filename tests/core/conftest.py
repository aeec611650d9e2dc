"""Shared tiny generator fixtures for the pure dsa_core tests (no host)."""

import pytest
import torch

from dsa_core.causal_wan import CausalWan
from dsa_core.config import TINY, TINY2
from dsa_core.wan_model import WanDiT, init_random_weights


@pytest.fixture(scope="session")
def tiny_dit():
    return init_random_weights(WanDiT(TINY), seed=1).eval()


@pytest.fixture(scope="session")
def tiny2_dit():
    return init_random_weights(WanDiT(TINY2), seed=2).eval()


@pytest.fixture(scope="session")
def tiny_cw(tiny_dit):
    return CausalWan(tiny_dit, TINY)


@pytest.fixture(scope="session")
def tiny2_cw(tiny2_dit):
    return CausalWan(tiny2_dit, TINY2)


@pytest.fixture
def one_thread():
    """Training tests on a shared 2-core machine: more threads than free cores makes small ops crawl."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
