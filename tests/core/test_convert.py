"""Self-Forcing / CausVid .pt -> safetensors conversion, with weights_only loading."""

import os
import stat
from pathlib import Path

import pytest
import torch

from dsa_core.checkpoint import CheckpointError, load_generator, load_state_dict_file
from dsa_core.config import TINY
from dsa_core.convert import convert, main
from dsa_core.wan_model import WanDiT, init_random_weights


def _wrap(sd, variant):
    out = {}
    for k, v in sd.items():
        if variant == "model":
            nk = "model." + k
        elif variant == "fsdp":
            nk = "model._fsdp_wrapped_module." + k.replace("blocks.", "blocks.", 1)
            if k.startswith("blocks."):
                i, rest = k[len("blocks.") :].split(".", 1)
                nk = f"model._fsdp_wrapped_module.blocks.{i}._fsdp_wrapped_module._checkpoint_wrapped_module.{rest}"
        elif variant == "compiled":
            nk = "_orig_mod.model." + k
        else:
            nk = k
        out[nk] = v.clone()
    return out


@pytest.fixture(scope="module")
def two_models():
    return init_random_weights(WanDiT(TINY), seed=11), init_random_weights(WanDiT(TINY), seed=12)


@pytest.mark.parametrize("variant", ["model", "fsdp", "compiled", "bare"])
def test_round_trip_each_prefix(tmp_path, two_models, variant):
    gen, ema = two_models
    src = tmp_path / "ckpt.pt"
    torch.save(
        {
            "generator": _wrap(gen.state_dict(), variant),
            "generator_ema": _wrap(ema.state_dict(), variant),
            "critic": {"model.x.weight": torch.zeros(2)},
        },
        src,
    )
    out = tmp_path / "out.safetensors"
    assert convert(src, out, dtype="fp32") == "generator_ema"  # EMA is preferred by default
    loaded = load_generator(out)
    for k, v in ema.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    _, meta = load_state_dict_file(out)
    assert meta["source_entry"] == "generator_ema"
    assert convert(src, out, which="generator", dtype="fp32", overwrite=True) == "generator"
    loaded = load_generator(out)
    for k, v in gen.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_cli_keeps_the_source_dtype_by_default_and_says_what_it_wrote(tmp_path, two_models, capsys):
    gen, _ = two_models
    src = tmp_path / "causvid.pt"
    torch.save({"generator": _wrap(gen.state_dict(), "model")}, src)  # CausVid: generator only, fp32
    out = tmp_path / "o.safetensors"
    assert main([str(src), str(out)]) == 0
    said = capsys.readouterr().out
    assert "from generator" in said and f"{len(gen.state_dict())} tensors, float32" in said
    sd, _ = load_state_dict_file(out)
    assert all(v.dtype == torch.float32 for v in sd.values())
    assert torch.equal(sd["blocks.0.ffn.0.weight"], gen.blocks[0].ffn[0].weight.detach())


def test_cli_bf16_when_asked(tmp_path, two_models, capsys):
    gen, _ = two_models
    src = tmp_path / "causvid.pt"
    torch.save({"generator": _wrap(gen.state_dict(), "model")}, src)
    out = tmp_path / "o.safetensors"
    assert main([str(src), str(out), "--dtype", "bf16"]) == 0
    assert "bfloat16" in capsys.readouterr().out
    sd, _ = load_state_dict_file(out)
    assert sd["blocks.0.ffn.0.weight"].dtype == torch.bfloat16
    assert torch.equal(sd["blocks.0.ffn.0.weight"], gen.blocks[0].ffn[0].weight.detach().bfloat16())


def test_error_pt_without_generator(tmp_path, capsys):
    src = tmp_path / "critic_only.pt"
    torch.save({"critic": {"model.blocks.0.x": torch.zeros(1)}, "step": torch.tensor(3)}, src)
    with pytest.raises(
        CheckpointError, match=r"no generator weights.*'generator_ema' or 'generator'.*\['critic', 'step'\]"
    ):
        convert(src, tmp_path / "o.safetensors")
    assert main([str(src), str(tmp_path / "o.safetensors")]) == 2
    assert "no generator weights" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="has no 'generator_ema' entry"):
        convert(src, tmp_path / "o.safetensors", which="generator_ema")


def test_error_generator_not_wan(tmp_path):
    src = tmp_path / "other.pt"
    torch.save({"generator": {"model.down.0.weight": torch.zeros(2, 2)}}, src)
    with pytest.raises(CheckpointError, match=r"not a Wan 2\.1 checkpoint: missing keys"):
        convert(src, tmp_path / "o.safetensors")


class Payload:
    """Any class: unpickling it would run import machinery, which weights_only refuses."""


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    src = tmp_path / "evil.pt"
    torch.save({"generator": Payload()}, src)
    with pytest.raises(CheckpointError, match=r"weights_only=True"):
        convert(src, tmp_path / "o.safetensors")


def test_truncated_pt(tmp_path, two_models):
    src = tmp_path / "t.pt"
    torch.save({"generator": two_models[0].state_dict()}, src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated/corrupted"):
        convert(src, tmp_path / "o.safetensors")


def test_generator_entry_not_tensors(tmp_path):
    src = tmp_path / "odd.pt"
    torch.save({"generator": [torch.zeros(1)]}, src)
    with pytest.raises(CheckpointError, match="'generator' entry is a list, not a dict of tensors"):
        convert(src, tmp_path / "o.safetensors")


def _causvid_pt(tmp_path, gen, name="causvid.pt"):
    src = tmp_path / name
    torch.save({"generator": _wrap(gen.state_dict(), "model")}, src)
    return src


def test_output_that_is_the_input_is_refused_and_the_source_kept(tmp_path, two_models, capsys):
    src = _causvid_pt(tmp_path, two_models[0])
    before = src.read_bytes()
    alias = tmp_path / "alias.pt"
    alias.symlink_to(src)
    for dst in (src, tmp_path / "." / "causvid.pt", alias):
        for extra in ([], ["--overwrite"]):
            assert main([str(src), str(dst), *extra]) == 2
            assert "is the input checkpoint" in capsys.readouterr().err
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.pt", "causvid.pt"]  # nothing else written


def test_existing_output_needs_overwrite(tmp_path, two_models, capsys):
    src = _causvid_pt(tmp_path, two_models[0])
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"someone's file")
    assert main([str(src), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"someone's file"
    assert main([str(src), str(out), "--overwrite"]) == 0
    assert torch.equal(load_state_dict_file(out)[0]["head.head.weight"], two_models[0].head.head.weight.detach())


def test_output_in_a_missing_folder_is_one_clear_error(tmp_path, two_models, capsys):
    src = _causvid_pt(tmp_path, two_models[0])
    assert main([str(src), str(tmp_path / "no_such_dir" / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "no_such_dir" in err and "Traceback" not in err


def test_written_with_normal_permissions_and_atomically(tmp_path, two_models, monkeypatch):
    import safetensors.torch

    import dsa_core.safe_write as ckpt

    src = _causvid_pt(tmp_path, two_models[0])
    out = tmp_path / "o.safetensors"
    old_umask = os.umask(0o022)
    try:
        convert(src, out)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    good = out.read_bytes()

    def dies_half_way(tensors, path, metadata=None):  # a write that fails after writing part of the file
        Path(path).write_bytes(b"half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt, "save_file", dies_half_way)
    with pytest.raises(OSError, match="No space"):
        convert(src, out, overwrite=True)
    assert out.read_bytes() == good  # the old output is whole, and no partial file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["causvid.pt", "o.safetensors"]
    assert safetensors.torch.load_file(str(out))
