"""dsa_core.streaming_decode without a host: the Wan frame-count rule, the toy codec decoded chunk by chunk, the
output buffer, and states that are never written into. (The Wan 2.1 VAE itself is tested against the host's own
VAE Decode in tests/host/test_streaming_inprocess.py.)"""

import pytest
import torch

from dsa_core.streaming_decode import DecodeState, FrameBuffer, FrameWiseDecoder, decode_chunks, wan_video_frames
from dsa_core.toy.world import decode_to_rgb


def test_wan_first_frame_rule():
    assert wan_video_frames(21, first=True) == 81  # Self-Forcing's 21 latent frames = 81 frames
    assert wan_video_frames(3, first=True) == 9 and wan_video_frames(3, first=False) == 12
    assert wan_video_frames(0, first=True) == 0
    # chunk after chunk adds up to the whole video's count
    assert wan_video_frames(3, True) + 6 * wan_video_frames(3, False) == wan_video_frames(21, True)


def test_toy_codec_chunkwise_equals_whole_and_states_are_not_written():
    lat = torch.randn(2, 16, 9, 8, 8, generator=torch.Generator().manual_seed(0))
    dec = FrameWiseDecoder(lambda x: decode_to_rgb(x, 2), source="toy")
    whole = decode_to_rgb(lat, 2)
    chunked, state = decode_chunks(dec, lat, 3)
    assert torch.equal(chunked, whole) and chunked.shape == (2, 9, 16, 16, 3)
    assert (state.latent_frames, state.video_frames, state.source) == (9, 9, "toy")
    start = dec.start()
    _, after = dec.decode(start, lat[:, :, :3])
    assert start == DecodeState(source="toy") and after.latent_frames == 3  # a new state; the old one as it was


def test_decode_state_to_copies_tensors_and_keeps_markers():
    t = torch.ones(1, 2, 2, 3, 3)
    s = DecodeState(cache=(t, "Rep", None), latent_frames=1, video_frames=1)
    moved = s.to("cpu")
    assert moved.cache[1:] == ("Rep", None) and torch.equal(moved.cache[0], t)
    assert s.nbytes == t.numel() * 4


def test_frame_buffer_fills_one_allocation_and_grows_if_needed():
    buf = FrameBuffer(5)
    assert buf.frames is None
    a, b = torch.rand(1, 3, 4, 4, 3), torch.rand(1, 2, 4, 4, 3)
    buf.append(a)
    data = buf.data
    buf.append(b)
    assert buf.data is data and torch.equal(buf.frames, torch.cat([a, b], 1))
    c = torch.rand(1, 4, 4, 4, 3)
    buf.append(c)  # beyond the announced total: still correct
    assert buf.count == 9 and torch.equal(buf.frames, torch.cat([a, b, c], 1))


# ---- the Wan decoder's frame grouping, with a small module of the Wan VAE's layout (no host) -------------------
class FakeWanDecoder(torch.nn.Module):
    """The Wan 2.1 decoder's calling convention and frame counts: the video's first call (an empty cache) takes one
    latent frame and gives 1 frame, every later latent frame gives 4; the cache slot is replaced, never written
    into. Each output depends on the whole group it was called with and on the cache, so another grouping gives
    other values. ``pieces``: return a list, as newer hosts' decoders do. Records the group sizes it was called on."""

    def __init__(self, pieces: bool):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.5))
        self.pieces, self.calls = pieces, []

    def forward(self, x, feat_cache, feat_idx):
        x = x.contiguous()  # the same float sums for a slice of the whole latent as for a chunk's frames
        self.calls.append(x.shape[2])
        prev, first = feat_cache[feat_idx[0]], feat_cache[feat_idx[0]] is None
        assert not first or x.shape[2] == 1
        feat_cache[feat_idx[0]] = x[:, :, -1:].clone()
        feat_idx[0] += 1
        level = x.mean(dim=(1, 2)) + (0.0 if first else 0.5 * prev.mean(dim=(1, 2)))  # [B, h, w]
        n = 1 if first else 4 * x.shape[2]
        ramp = torch.arange(n, dtype=x.dtype) / (4 * n)
        out = torch.tanh(self.scale * level[:, None, None] + ramp[None, None, :, None, None])
        out = out.repeat_interleave(8, -1).repeat_interleave(8, -2).expand(-1, 3, -1, -1, -1)
        return [out[:, :, :1], out[:, :, 1:]] if self.pieces and n > 1 else out


class FakeWanVAE(torch.nn.Module):
    def __init__(self, pieces: bool):
        super().__init__()
        self.conv2 = torch.nn.Conv3d(4, 4, 1)
        self.decoder = FakeWanDecoder(pieces)
        with torch.no_grad():
            self.conv2.weight.copy_(torch.eye(4).reshape(4, 4, 1, 1, 1) * 0.9)
            self.conv2.bias.fill_(0.1)


def host_grouped_decode(vae, z, pairs: bool):
    """The whole-video decode as the hosts write it: one frame per call (0.3.x), or the first frame, then frames
    1 + 2(i-1) .. 1 + 2i per call (newer hosts)."""
    feat, x = [None], vae.conv2(z)
    groups = [x[:, :, :1]] + (
        [x[:, :, 1 + 2 * (i - 1) : 1 + 2 * i] for i in range(1, 1 + z.shape[2] // 2)]
        if pairs
        else [x[:, :, i : i + 1] for i in range(1, z.shape[2])]
    )
    outs = []
    for g in groups:
        o = vae.decoder(g, feat_cache=feat, feat_idx=[0])
        outs += o if isinstance(o, list) else [o]
    return torch.clamp((torch.cat(outs, 2) + 1) / 2, 0, 1).movedim(1, -1)


@pytest.mark.parametrize("pairs", [False, True])
@pytest.mark.parametrize("frames,chunk", [(6, 3), (7, 3), (5, 1), (6, 2), (8, 4), (1, 3)])
def test_wan_decode_groups_as_the_host_chunk_by_chunk(pairs, frames, chunk):
    from dsa_core.streaming_decode import CausalWanDecoder

    vae = FakeWanVAE(pieces=pairs)
    z = torch.randn(1, 4, frames, 2, 3, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        whole = host_grouped_decode(vae, z, pairs)
    host_calls, vae.decoder.calls = vae.decoder.calls, []
    dec = CausalWanDecoder(vae, slots=1, pairs=pairs)
    streamed, state = decode_chunks(dec, z, chunk)
    assert vae.decoder.calls == host_calls  # the host's groups, whatever the chunking
    assert streamed.shape == whole.shape == (1, wan_video_frames(frames, True), 16, 24, 3)
    assert torch.equal(streamed, whole)
    held = pairs and frames % 2 == 0  # an even-length latent ends on a lone frame
    assert (state.pending is not None) == held and state.latent_frames == frames
    assert state.video_frames == wan_video_frames(frames, True) - (4 if held else 0)


def test_wan_pairing_holds_a_frame_back_without_touching_states():
    from dsa_core.streaming_decode import CausalWanDecoder

    vae = FakeWanVAE(pieces=True)
    dec = CausalWanDecoder(vae, slots=1, pairs=True)
    z = torch.randn(1, 4, 9, 2, 3, generator=torch.Generator().manual_seed(0))
    a, s1 = dec.decode(dec.start(), z[:, :, :3])  # [0], [1, 2]
    assert vae.decoder.calls == [1, 2] and a.shape[1] == 9 and s1.pending is None
    b, s2 = dec.decode(s1, z[:, :, 3:6])  # [3, 4]; 5 waits
    assert vae.decoder.calls[2:] == [2] and b.shape[1] == 8 and s2.pending.shape[2] == 1
    assert (s2.latent_frames, s2.video_frames) == (6, 17) and s2.nbytes > s1.nbytes
    kept = (s2.pending.clone(), [c.clone() for c in s2.cache])
    tail, flushed = dec.flush(s2)  # the video's end: 5 alone
    assert tail.shape[1] == 4 and flushed.flushed and flushed.pending is None and flushed.video_frames == 21
    c1, s3 = dec.decode(s2, z[:, :, 6:9])  # a continuation pairs [5, 6], [7, 8]
    c2, _ = dec.decode(s2, z[:, :, 6:9])  # and a second branch from the same state
    assert vae.decoder.calls[-2:] == [2, 2] and c1.shape[1] == 16 and torch.equal(c1, c2)
    assert torch.equal(s2.pending, kept[0]) and all(torch.equal(x, y) for x, y in zip(s2.cache, kept[1]))
    assert s3.pending is None and (s3.latent_frames, s3.video_frames) == (9, 33)
    whole = host_grouped_decode(vae, z, True)
    assert torch.equal(torch.cat([a, b, c1], 1), whole)  # the continued video = the host's decode
    assert (tail - whole[:, 17:21]).abs().max() > 1e-3  # the lone tail was provisional
    assert torch.equal(torch.cat([a, b, tail], 1), host_grouped_decode(vae, z[:, :, :6], True))
    with pytest.raises(ValueError, match="flushed"):
        dec.decode(flushed, z[:, :, 6:9])
    none, held = dec.decode(s1, z[:, :, 3:4])  # a chunk whose only frame waits: no frames
    assert none.shape == (1, 0, 16, 24, 3) and held.latent_frames == 4 and held.video_frames == 9
    moved = s2.to("cpu")
    assert moved is not s2 and torch.equal(moved.pending, s2.pending) and len(moved.cache) == len(s2.cache)
