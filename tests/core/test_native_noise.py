"""NativeARNoise draws what ComfyUI's Sampler AR Video draws (the host's seeding, reproduced without the host)."""

import torch

from dsa_core.noise import NativeARNoise, SeededNoise


def test_start_noise_is_a_slice_of_one_whole_video_draw():
    shape_full = (1, 16, 7, 4, 6)
    torch.manual_seed(11)  # the host: comfy.sample.prepare_noise = torch.manual_seed(seed) + one randn on the CPU
    full = torch.randn(shape_full)
    src = NativeARNoise(11, total_frames=7, chunk_frames=3, start_frames=1)
    assert torch.equal(src.sample(1, 0, (1, 16, 3, 4, 6)), full[:, :, 1:4])
    assert torch.equal(src.sample(4, 0, (1, 16, 3, 4, 6)), full[:, :, 4:7])


def test_renoising_is_seeded_seed_plus_block_times_1000_plus_step():
    src = NativeARNoise(5, total_frames=7, chunk_frames=3, start_frames=1)
    shape = (1, 16, 3, 4, 6)
    for chunk_key, block in ((1, 0), (4, 1)):
        for step_index in (1, 2, 3):  # DSA's step k re-noises after the host's step i = k - 1
            torch.manual_seed(5 + block * 1000 + step_index - 1)
            assert torch.equal(src.sample(chunk_key, step_index, shape), torch.randn(shape))


def test_differs_from_dsa_default_noise_and_from_another_seed():
    shape = (1, 16, 1, 4, 4)
    a = NativeARNoise(1, total_frames=3, chunk_frames=1).sample(0, 0, shape)
    assert not torch.equal(a, SeededNoise(1).sample(0, 0, shape))
    assert not torch.equal(a, NativeARNoise(2, total_frames=3, chunk_frames=1).sample(0, 0, shape))


def test_seeds_near_the_top_of_the_widget_range_wrap_instead_of_overflowing():
    """seed + 1000*block + step past 2^64 - 1 (the seed widget's maximum) wraps around 2^64; below it the draw is
    the host's exactly."""
    top = 2**64 - 1
    src = NativeARNoise(top, total_frames=7, chunk_frames=3, start_frames=1)
    shape = (1, 16, 3, 4, 6)
    torch.manual_seed((top + 1000 + 1) % 2**64)  # block 1, step index 2
    assert torch.equal(src.sample(4, 2, shape), torch.randn(shape))
    torch.manual_seed(top)
    assert torch.equal(src.sample(1, 0, shape), torch.randn((1, 16, 7, 4, 6))[:, :, 1:4])
    below = NativeARNoise(top - 2000, total_frames=7, chunk_frames=3, start_frames=1)
    torch.manual_seed(top - 2000 + 1000 + 1)
    assert torch.equal(below.sample(4, 2, shape), torch.randn(shape))
