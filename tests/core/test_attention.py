import pytest
import torch

from dsa_core.attention import get_attention, sdpa_attention, xformers_available


def test_sdpa_signature_and_values():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    out = sdpa_attention(q, k, v)
    assert out.shape == (2, 5, 24)
    w = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, -1)
    ref = (w @ v).transpose(1, 2).reshape(2, 5, 24)
    assert torch.allclose(out, ref, atol=1e-5)
    assert get_attention("sdpa") is sdpa_attention and get_attention(None) is sdpa_attention


def test_unknown_attention_name():
    with pytest.raises(ValueError, match="unknown attention 'flash9'.*available"):
        get_attention("flash9")


def test_xformers_is_optional():
    if xformers_available():
        fn = get_attention("xformers")
        q = torch.randn(1, 2, 4, 8)
        assert torch.allclose(fn(q, q, q), sdpa_attention(q, q, q), atol=1e-3)
    else:
        with pytest.raises(RuntimeError, match="xformers cannot be imported"):
            get_attention("xformers")
