"""DSA Prompt Embedding: CONDITIONING from a saved text-encoder output, no text encoder needed.

UMT5-XXL needs ~10 GB of weights; a prompt encoded once (or the toy model's synthetic prompts) can be shipped
as a small safetensors file under models/dsa_prompts and used anywhere the host expects CONDITIONING.
"""

from __future__ import annotations

import folder_paths
from comfy_api.latest import io

from ..dsa_core import prompt_files
from . import input_checks
from .combo_input import Combo
from .model_folders import PROMPTS as FOLDER


class DSAPromptEmbedding(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DSAPromptEmbedding",
            display_name="DSA Prompt Embedding (file)",
            category="DSA",
            description="Loads a prompt that was encoded ahead of time (a safetensors file with a 'context' "
            "tensor [tokens, channels]) as CONDITIONING, for graphs without a text encoder.",
            inputs=[
                Combo(
                    "embedding",
                    options=folder_paths.get_filename_list(FOLDER),
                    tooltip="A file in models/dsa_prompts. Make one with "
                    "`python -m dsa_core.prompt_files` or use the toy model's prompts.",
                ),
            ],
            outputs=[io.Conditioning.Output(display_name="conditioning"), io.String.Output(display_name="prompt")],
        )

    @classmethod
    @input_checks.validates("embedding")
    def validate_inputs(cls, embedding) -> bool | str:
        return True  # the file is one of the listed ones (checked by the decorator); its contents when it runs

    @classmethod
    def execute(cls, embedding) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise(FOLDER, embedding)
        pf = prompt_files.load_prompt_embedding(path)
        return io.NodeOutput([[pf.context, {}]], pf.prompt)
