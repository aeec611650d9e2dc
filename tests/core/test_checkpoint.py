"""Safetensors loading/saving: prefixes, dtypes, config inference and every error message."""

import pytest
import torch
from safetensors.torch import save_file
from wan_testutil import make_inputs

from dsa_core.checkpoint import (
    CheckpointError,
    infer_config,
    load_generator,
    load_state_dict_file,
    normalize_wan_keys,
    parse_dtype,
    save_generator,
    split_state_dict,
)
from dsa_core.config import TINY, TINY2
from dsa_core.wan_model import WanDiT


def _sd(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _same_output(a, b, atol=1e-6):
    x, t, ctx = make_inputs(frames=2)
    with torch.no_grad():
        return torch.allclose(a(x, t, ctx).float(), b(x, t, ctx).float(), atol=atol)


@pytest.mark.parametrize("prefix", ["", "model.", "diffusion_model.", "model.diffusion_model."])
def test_prefixes_round_trip(tmp_path, tiny_dit, prefix):
    path = tmp_path / "g.safetensors"
    save_file({prefix + k: v for k, v in _sd(tiny_dit).items()}, str(path))
    model = load_generator(path)
    assert model.config == TINY
    for k, v in tiny_dit.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert _same_output(model, tiny_dit)


def test_normalize_strips_wrappers():
    sd = {
        "model._fsdp_wrapped_module.blocks.0._fsdp_wrapped_module._checkpoint_wrapped_module.self_attn.q.weight": 1,
        "_orig_mod.model.head.modulation": 2,
        "confidence_head.mlp.0.weight": 3,
    }
    assert normalize_wan_keys(sd) == {
        "blocks.0.self_attn.q.weight": 1,
        "head.modulation": 2,
        "confidence_head.mlp.0.weight": 3,
    }
    with pytest.raises(CheckpointError, match="collide"):
        normalize_wan_keys({"model.head.modulation": 1, "head.modulation": 2})


def test_split_state_dict():
    gen, head = split_state_dict({"head.head.weight": 1, "confidence_head.fc.weight": 2})
    assert gen == {"head.head.weight": 1} and head == {"confidence_head.fc.weight": 2}


def test_infer_config_tiny2_and_metadata(tmp_path, tiny2_dit):
    assert infer_config(_sd(tiny2_dit)) == TINY2
    path = tmp_path / "g.safetensors"
    save_generator(tiny2_dit, path, metadata={"note": "x"})
    sd, meta = load_state_dict_file(path)
    assert meta["note"] == "x" and meta["format"] == "wan2.1-t2v"
    assert set(sd) == set(tiny2_dit.state_dict())


@pytest.mark.parametrize(
    "name,dtype,atol", [("fp32", torch.float32, 1e-6), ("bf16", torch.bfloat16, 0.5), ("fp16", torch.float16, 0.05)]
)
def test_dtypes(tmp_path, tiny_dit, name, dtype, atol):
    path = tmp_path / "g.safetensors"
    save_generator(tiny_dit, path, dtype=name)
    sd, _ = load_state_dict_file(path)
    assert sd["blocks.0.ffn.0.weight"].dtype == dtype
    model = load_generator(path)
    assert model.blocks[0].ffn[0].weight.dtype == dtype
    assert _same_output(model, tiny_dit, atol=atol)  # runs in fp32 with upcast weights
    m32 = load_generator(path, dtype="fp32")
    assert m32.blocks[0].ffn[0].weight.dtype == torch.float32


def test_fp8_storage(tmp_path, tiny_dit):
    fp8 = parse_dtype("fp8_e4m3fn")
    assert fp8 == torch.float8_e4m3fn
    path = tmp_path / "g8.safetensors"
    save_generator(tiny_dit, path, dtype="fp8_e4m3fn")
    sd, _ = load_state_dict_file(path)
    assert sd["blocks.0.self_attn.q.weight"].dtype == fp8
    assert sd["blocks.0.modulation"].dtype == torch.bfloat16  # non-matrix tensors stay bf16
    model = load_generator(path)
    assert model.blocks[0].self_attn.q.weight.dtype == fp8
    x, t, ctx = make_inputs(frames=2)
    with torch.no_grad():
        out = model(x.bfloat16(), t, ctx.bfloat16())  # fp8 weights upcast at compute
        ref = tiny_dit(x, t, ctx)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 0.3, rel
    assert path.stat().st_size < 0.4 * (4 * sum(v.numel() for v in tiny_dit.state_dict().values()))


def test_parse_dtype_errors():
    assert parse_dtype("bf16") == torch.bfloat16 and parse_dtype(None) is None and parse_dtype("auto") is None
    with pytest.raises(CheckpointError, match="unknown dtype 'int4'"):
        parse_dtype("int4")


def test_combined_file_ignores_head_keys(tmp_path, tiny_dit):
    path = tmp_path / "both.safetensors"
    sd = _sd(tiny_dit)
    sd["confidence_head.fc.weight"] = torch.zeros(4, 4)
    save_file(sd, str(path))
    assert _same_output(load_generator(path), tiny_dit)


# ---- errors ---------------------------------------------------------------------------------------
def test_error_not_wan(tmp_path):
    path = tmp_path / "sd15.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(CheckpointError, match=r"not a Wan 2\.1 checkpoint: missing keys \['patch_embedding.weight'"):
        load_generator(path)


def test_error_i2v(tmp_path, tiny_dit):
    sd = _sd(tiny_dit)
    sd["blocks.0.cross_attn.k_img.weight"] = torch.zeros(128, 128)
    sd["img_emb.proj.1.weight"] = torch.zeros(128, 1280)
    path = tmp_path / "i2v.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError, match="image-to-video .I2V.*text-to-video"):
        load_generator(path)


def test_error_i2v_by_in_dim(tmp_path, tiny_dit):
    sd = _sd(tiny_dit)
    sd["patch_embedding.weight"] = torch.zeros(128, 36, 1, 2, 2)
    with pytest.raises(CheckpointError, match="I2V"):
        infer_config(sd)


def test_error_shape_mismatch(tmp_path, tiny_dit):
    sd = _sd(tiny_dit)
    sd["blocks.1.ffn.0.weight"] = torch.zeros(300, 128)
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path))
    wrong = r"shape mismatch.*blocks\.1\.ffn\.0\.weight: file \(300, 128\) vs expected \(256, 128\)"
    with pytest.raises(CheckpointError, match=wrong):
        load_generator(path)
    good = tmp_path / "good.safetensors"
    save_file(_sd(tiny_dit), str(good))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_generator(good, config=TINY2)  # an explicit config that does not fit the file


def test_error_missing_block_key(tmp_path, tiny_dit):
    sd = _sd(tiny_dit)
    del sd["blocks.1.cross_attn.v.bias"]
    path = tmp_path / "inc.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError, match=r"missing 1 Wan keys.*blocks\.1\.cross_attn\.v\.bias"):
        load_generator(path)


def test_error_truncated_and_corrupted(tmp_path, tiny_dit):
    path = tmp_path / "g.safetensors"
    save_file(_sd(tiny_dit), str(path))
    data = path.read_bytes()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_generator(trunc)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + b"\x00" * 64)
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_generator(junk)
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator(tmp_path / "missing.safetensors")


def test_error_pt_passed_to_loader(tmp_path, tiny_dit):
    path = tmp_path / "self_forcing.pt"
    torch.save({"generator": _sd(tiny_dit)}, path)
    with pytest.raises(CheckpointError, match=r"python -m dsa_core\.convert"):
        load_generator(path)
    renamed = tmp_path / "disguised.safetensors"  # a pickle with the wrong extension is caught too
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match=r"pickled PyTorch checkpoint"):
        load_state_dict_file(renamed)


def test_error_head_file_as_generator(tmp_path):
    path = tmp_path / "head.safetensors"
    save_file({"confidence_head.fc.weight": torch.zeros(4, 4), "confidence_head.fc.bias": torch.zeros(4)}, str(path))
    with pytest.raises(CheckpointError, match="this is a confidence-head file, load it in the head slot"):
        load_generator(path)


def test_meta_1_3b_from_shapes_only():
    from dsa_core.checkpoint import check_shapes
    from dsa_core.config import WAN21_T2V_1_3B

    sd = WanDiT(WAN21_T2V_1_3B, device="meta").state_dict()
    check_shapes(sd, WAN21_T2V_1_3B)  # no error, nothing allocated
    sd["blocks.3.self_attn.o.weight"] = torch.empty(1536, 1024, device="meta")
    with pytest.raises(CheckpointError, match=r"blocks\.3\.self_attn\.o\.weight"):
        check_shapes(sd, WAN21_T2V_1_3B)


def test_save_generator_extra_tensors_and_head_export(tmp_path, tiny_dit):
    """One writer for generator files: extra tensors ride along (a head under its own prefix), a collision
    with a Wan key is refused, and the exported generator+head file loads as both."""
    from dsa_core.confidence_head import ConfidenceHead, HeadConfig, load_head
    from dsa_core.training.export import save_generator_with_head

    with pytest.raises(ValueError, match="collides"):
        save_generator(tiny_dit, tmp_path / "x.safetensors", extra_tensors={"head.head.weight": torch.zeros(1)})
    head = ConfidenceHead(HeadConfig(dim=TINY.dim, hidden_dim=8))
    p = tmp_path / "both.safetensors"
    save_generator_with_head(tiny_dit, head, p, dtype="bf16", metadata={"note": "x"})
    back = load_generator(p)
    for k, v in tiny_dit.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k].float(), v.to(torch.bfloat16).float())
    h2 = load_head(p, expected_dim=TINY.dim)
    for k, v in head.state_dict().items():
        assert torch.equal(h2.state_dict()[k], v)


def test_safetensors_header_is_never_taken_for_a_pickle(tmp_path):
    """A safetensors file whose header length starts with the byte 0x80 (a pickle's first byte) still loads, from
    the generator loader, the header reader and the head loader alike."""
    from dsa_core.checkpoint_header import read_header
    from dsa_core.confidence_head import ConfidenceHead, HeadConfig, head_state_dict, load_head

    path = tmp_path / "head.safetensors"
    sd = head_state_dict(ConfidenceHead(HeadConfig(dim=8, hidden_dim=4)))
    for pad in range(300):
        save_file(sd, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80 and path.read_bytes()[8:9] == b"{"
    assert set(load_state_dict_file(path)[0]) == set(sd)
    assert set(read_header(path)[0]) == set(sd)
    assert load_head(path).config.dim == 8
