"""dsa_core.streaming_decode without a host: the Wan frame-count rule, the toy codec decoded chunk by chunk, the
output buffer, and states that are never written into. (The Wan 2.1 VAE itself is tested against the host's own
VAE Decode in tests/host/test_streaming_inprocess.py.)"""

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
