"""torch.compile of the chunk forward's block pieces (dsa_core.compiled): graphs shared by every block, step, chunk
and run of one chunk size, and the same output as the eager forward."""

import torch
from torch._dynamo.utils import counters

from dsa_core.causal_wan import EAGER_PIECES, CausalWan
from dsa_core.compiled import compile_options, compiled_pieces
from dsa_core.config import WanConfig
from dsa_core.wan_model import WanDiT, init_random_weights

CFG = WanConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=3, text_dim=32, text_len=8)


def _video(cw, text, chunks, steps=(1000.0, 750.0, 500.0)):
    cache = cw.new_cache(1, 4, 4, 2, total_frames=2 * chunks)
    flows = []
    for c in range(chunks):
        for s in steps:
            x = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(100 * c + int(s)))
            out = cw.forward_chunk(x, torch.full((1,), s), text, cache, 2 * c)
        flows.append(out.flow)
    return torch.cat(flows, 2)


def test_compiled_pieces_one_graph_each_for_every_block_step_chunk_and_run():
    dit = init_random_weights(WanDiT(CFG), seed=2).eval()
    eager = CausalWan(dit, CFG)
    text = eager.encode_text(torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1)))
    pieces = compiled_pieces({"backend": "aot_eager"})
    assert compiled_pieces({"backend": "aot_eager", "mode": None}) is pieces  # the same graphs for equal options
    assert pieces is not EAGER_PIECES
    with torch.no_grad():
        ref = _video(eager, text, chunks=2)
        before = counters["stats"]["unique_graphs"]
        first = CausalWan(dit, CFG)
        first.pieces = pieces
        got = _video(first, text, chunks=2)
        made = counters["stats"]["unique_graphs"] - before
        # 3 blocks x 2 chunks x 3 steps = 18 calls of each piece, one graph each
        assert made == len(EAGER_PIECES)
        assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()
        second = CausalWan(dit, CFG)  # a later run: more chunks, other steps
        second.pieces = pieces
        _video(second, text, chunks=3, steps=(1000.0, 500.0))
    assert counters["stats"]["unique_graphs"] - before == made


def test_compile_options_static_by_default_and_the_callers_dict_untouched():
    recorded = {"backend": "inductor", "options": {"guard_filter_fn": len}, "mode": None, "dynamic": None}
    kw = compile_options(recorded)
    assert kw == {"backend": "inductor", "options": {"guard_filter_fn": len}, "dynamic": False}
    kw["options"].pop("guard_filter_fn")
    assert recorded["options"] == {"guard_filter_fn": len}
    assert compile_options({"dynamic": True})["dynamic"] is True
