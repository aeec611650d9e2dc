"""The pack's ComfyUI V3 extension: thin nodes that translate between the host's types and dsa_core."""

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from . import error_names, input_checks, routes
from .ladder_node import DSANoiseLadder
from .live_node import DSALive
from .loader_nodes import DSAHeadLoader, DSAModelLoader
from .prompt_embedding_node import DSAPromptEmbedding
from .report_node import DSAStepReport
from .sampler_nodes import DSAExtend, DSASampler
from .toy_decode_node import DSAToyDecode
from .toy_vae import DSAToyVAE

# Node ids, input names and widget order are a contract with saved workflows: see tests/host/node_schemas.json.
NODES: list[type[io.ComfyNode]] = [
    DSAModelLoader,
    DSAHeadLoader,
    DSASampler,
    DSAExtend,
    DSAStepReport,
    DSANoiseLadder,
    DSAPromptEmbedding,
    DSAToyDecode,
    DSAToyVAE,
    DSALive,
]

routes.register_with_host()
error_names.use_short_names()
for _node in NODES:  # every widget value checked against its node's schema when the node runs
    input_checks.check_widgets_when_run(_node)


class DSAExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> DSAExtension:
    return DSAExtension()
