"""DSA Model Loader and DSA Head Loader.

The generator goes through the host's own loader (comfy.sd.load_diffusion_model_state_dict), so the MODEL is a
normal ComfyUI Wan 2.1 model: LoRA loaders and other patches apply and ModelPatcher handles devices and low
VRAM. dsa_core checks the file first (from its header only) so a wrong file is a node error at queue time.
"""

from __future__ import annotations

import comfy.sd
import folder_paths
from comfy_api.latest import io

from ..dsa_core import checkpoint as ckpt
from ..dsa_core.calibration import META_HEURISTIC, table_from_metadata
from ..dsa_core.checkpoint_header import read_header
from ..dsa_core.checkpoint_keys import head_keys
from ..dsa_core.confidence_head import META_CONFIG, HeadConfig, head_from_state_dict, load_head
from . import causal_ar_files, input_checks, model_folders, toy_vae
from .combo_input import Combo
from .dsa_types import DSAHead
from .host_model import SUPPORTED_FAMILIES
from .sampling import HEURISTIC_TABLE

HEAD_AUTO = "auto (embedded in the generator file, else none)"
HEAD_NONE = "none"
DTYPES = ["default", "fp32", "bf16", "fp16", "fp8_e4m3fn", "fp8_e5m2"]


def _head_options() -> list[str]:
    return [HEAD_AUTO, HEAD_NONE] + folder_paths.get_filename_list(model_folders.HEADS)


def check_generator_file(path: str) -> tuple[ckpt.WanConfig, bool]:
    """(config, has_embedded_head) from the header; CheckpointError says what is wrong with the file."""
    sd, meta = read_header(path)
    _gen, head, config = ckpt.check_generator_state(sd, meta, what=path)
    return config, bool(head)


def check_head_file(path: str, dim: int | None) -> None:
    sd, meta = read_header(path)
    if not head_keys(sd):
        head_from_state_dict({k: sd[k] for k in list(sd)[:64]}, meta, source=path)  # raises the right message
    cfg_dim = HeadConfig.from_json(meta[META_CONFIG]).dim if META_CONFIG in meta else None
    if dim is not None and cfg_dim is not None and cfg_dim != dim:
        raise ckpt.CheckpointError(
            f"{path}: this confidence head was trained for a generator with dim {cfg_dim}, "
            f"but the generator has dim {dim}; load the head made for this model"
        )


def model_options(weight_dtype: str) -> dict:
    dt = ckpt.parse_dtype(None if weight_dtype == "default" else weight_dtype)
    return {} if dt is None else {"dtype": dt}


class DSAModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DSAModelLoader",
            display_name="DSA Model Loader",
            category="DSA",
            description="Loads an autoregressive Wan 2.1 T2V generator (Self-Forcing, CausVid, DSA-trained, or a "
            "causal-AR repack such as Causal Forcing; safetensors) as a ComfyUI MODEL, and its "
            "confidence head.",
            inputs=[
                Combo(
                    "generator",
                    options=model_folders.generator_names(),
                    tooltip="An AR Wan 2.1 text-to-video checkpoint in models/diffusion_models "
                    "(.safetensors; convert original .pt files with python -m dsa_core.convert).",
                ),
                Combo(
                    "head",
                    options=_head_options(),
                    default=HEAD_AUTO,
                    tooltip="The confidence head that decides each chunk's steps: a file in models/dsa, "
                    "'auto' to use one embedded in the generator file, or none (then use the "
                    "fixed or heuristic policy).",
                ),
                Combo(
                    "weight_dtype",
                    options=DTYPES,
                    default="default",
                    tooltip="Storage dtype of the generator weights. default keeps the file's; fp8 halves "
                    "memory (ComfyUI computes in bf16/fp32).",
                ),
            ],
            outputs=[io.Model.Output(display_name="model"), DSAHead.Output(display_name="head")],
        )

    @classmethod
    @input_checks.validates("generator")
    def validate_inputs(cls, generator) -> bool | str:
        """The generator file, from its header (nodes/input_checks.py: one input per validator). The head file
        and weight_dtype are checked when the node runs, before any weight loads."""
        try:
            check_generator_file(model_folders.generator_path(generator))
        except ckpt.CheckpointError as e:
            return f"{e}. DSA Model Loader reads {SUPPORTED_FAMILIES}; other files: load them with their own loader"
        except Exception as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, generator, head, weight_dtype) -> io.NodeOutput:
        path = model_folders.generator_path(generator)
        if head not in (HEAD_AUTO, HEAD_NONE):
            config, _ = check_generator_file(path)
            try:
                check_head_file(folder_paths.get_full_path_or_raise(model_folders.HEADS, head), config.dim)
            except (ckpt.CheckpointError, FileNotFoundError) as e:
                raise ckpt.CheckpointError(f"head: {e}") from None
        sd, meta = ckpt.load_state_dict_file(path)
        gen_sd, head_sd, config = ckpt.check_generator_state(sd, meta, what=path)
        # The file's metadata goes along: hosts with native causal AR read their model class from it.
        model = comfy.sd.load_diffusion_model_state_dict(
            gen_sd, model_options=model_options(weight_dtype), metadata=dict(meta) if meta else None
        )
        if model is None:
            raise ckpt.CheckpointError(f"ComfyUI could not detect a model in {generator}")
        causal_ar_files.give_causal_ar_sampling(model, meta)
        toy_vae.mark_if_toy(model, meta)
        heuristic = table_from_metadata(meta, META_HEURISTIC)
        if heuristic is not None:  # what the heuristic policy's thresholds cost on this generator (calibration.py)
            model.set_attachments(HEURISTIC_TABLE, heuristic)
        conf_head = None
        if head == HEAD_AUTO and head_sd:
            conf_head = head_from_state_dict(head_sd, meta, expected_dim=config.dim, source=generator)
        elif head not in (HEAD_AUTO, HEAD_NONE):
            head_path = folder_paths.get_full_path_or_raise(model_folders.HEADS, head)
            conf_head = load_head(head_path, expected_dim=config.dim)
        return io.NodeOutput(model, conf_head)


class DSAHeadLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DSAHeadLoader",
            display_name="DSA Head Loader",
            category="DSA",
            description="Loads a DSA confidence head on its own, e.g. to pair with a Wan model from UNETLoader.",
            inputs=[
                Combo(
                    "head",
                    options=folder_paths.get_filename_list(model_folders.HEADS),
                    tooltip="A confidence head (.safetensors) in models/dsa, or a combined "
                    "generator+head file (only the head is read).",
                ),
            ],
            outputs=[DSAHead.Output(display_name="head")],
        )

    @classmethod
    @input_checks.validates("head")
    def validate_inputs(cls, head) -> bool | str:
        try:
            check_head_file(folder_paths.get_full_path_or_raise(model_folders.HEADS, head), None)
        except Exception as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, head) -> io.NodeOutput:
        return io.NodeOutput(load_head(folder_paths.get_full_path_or_raise(model_folders.HEADS, head)))
