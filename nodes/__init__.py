"""The pack's ComfyUI V3 extension: thin nodes that translate between the host's types and dsa_core."""
from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from .ladder_node import DSANoiseLadder
from .prompt_embedding_node import DSAPromptEmbedding

NODES: list[type[io.ComfyNode]] = [DSANoiseLadder, DSAPromptEmbedding]


class DSAExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> DSAExtension:
    return DSAExtension()
