"""dsa_core.live on the real tiny generator: a live run is the sampler's own loop. Changes requested while it runs
take effect at the next chunk boundary and give exactly the frames the sampler gives with the same changes
scheduled at that chunk (prompt_schedule with the same recache; a threshold as a policy from that chunk on);
stop and the chunk limit end it at a boundary; Cancel interrupts inside a chunk."""

import pytest
import torch

from dsa_core.ar_sampler import SamplingInterrupted, prepare_state, sample_video
from dsa_core.live import STOP_FRAMES, STOP_USER, LiveControls, run_live, with_threshold
from dsa_core.policies import ConfidencePolicy, FixedSteps
from dsa_core.schedules import extended_ladder, self_forcing_ladder

H, W, CF, WINDOW = 4, 6, 3, 6
EXT = extended_ladder(self_forcing_ladder(), 6)


@pytest.fixture(scope="module")
def texts(tiny_cw):
    g = torch.Generator().manual_seed(5)
    return [tiny_cw.encode_text(torch.randn(1, 6, 4096, generator=g)) for _ in range(2)]


class HiddenHead(torch.nn.Module):
    """A deterministic confidence from the hidden states (so thresholds decide differently per chunk)."""

    def forward(self, hidden, time_emb):
        return torch.sigmoid(hidden.float().flatten(2).mean(-1) * 40.0)


def live_run(cw, text, controls, at=None, **kw):
    """A live run; ``at``: {chunk: action(controls)} applied when that many chunks are done."""
    work, _ = prepare_state(
        cw, text, num_frames=0, latent_h=H, latent_w=W, chunk_frames=CF, seed=11, window_frames=WINDOW
    )

    def on_chunk(info):
        act = (at or {}).get(info.chunk_number + 1)
        if act is not None:
            act(controls)

    return run_live(cw, work, chunk_callback=on_chunk, controls=controls, **kw)


def test_changes_equal_the_sampler_with_the_same_changes_scheduled(tiny_cw, texts):
    a, b = texts
    head = HiddenHead()
    pol = ConfidencePolicy(0.5, 1, 6)
    ctl = LiveControls()
    res = live_run(
        tiny_cw,
        a,
        ctl,
        at={2: lambda c: c.change_prompt("b", b), 3: lambda c: c.change_threshold(0.95), 5: lambda c: c.stop()},
        ladder=EXT,
        policy=pol,
        head=head,
        encode_prompt=lambda payload: payload,
        recache="all",
    )
    assert res.stop_reason == STOP_USER and len(res.record.chunks) == 5 and res.latent.shape[2] == 15
    assert [(c.kind, c.chunk, c.frame) for c in res.changes] == [("prompt", 2, 6), ("threshold", 3, 9)]
    assert res.changes[0].extra_nfe == 2  # recache 'all': one pass per committed chunk
    # the sampler: prompt switch scheduled at chunk 2 (recache all), then the new threshold from chunk 3
    one, st, rec1 = sample_video(
        tiny_cw,
        a,
        num_frames=9,
        latent_h=H,
        latent_w=W,
        chunk_frames=CF,
        seed=11,
        window_frames=WINDOW,
        ladder=EXT,
        policy=pol,
        head=head,
        prompt_schedule={2: b},
        recache="all",
    )
    two, _, rec2 = sample_video(
        tiny_cw, None, num_frames=6, state=st, ladder=EXT, policy=ConfidencePolicy(0.95, 1, 6), head=head
    )
    assert torch.equal(res.latent, torch.cat([one, two], 2))
    assert [c.steps for c in res.record.chunks] == [c.steps for c in rec1.chunks + rec2.chunks]
    assert res.record.extra_nfe == rec1.extra_nfe == 2
    # the threshold mattered: the same run without it takes other steps on the last chunks
    plain = live_run(tiny_cw, a, LiveControls(), ladder=EXT, policy=pol, head=head, encode_prompt=None, max_chunks=5)
    assert plain.stop_reason == STOP_FRAMES and len(plain.record.chunks) == 5
    assert [c.steps for c in plain.record.chunks[3:]] != [c.steps for c in res.record.chunks[3:]]


def test_memory_is_a_rolling_window(tiny_cw, texts):
    res = live_run(tiny_cw, texts[0], LiveControls(), ladder=EXT, policy=FixedSteps(), encode_prompt=None, max_chunks=8)
    assert res.state.cache.capacity_frames == WINDOW and res.state.frames == 24
    work, _ = prepare_state(tiny_cw, texts[0], num_frames=3, latent_h=H, latent_w=W, chunk_frames=CF)  # keep-all
    with pytest.raises(ValueError, match="rolling cache window"):
        run_live(tiny_cw, work, ladder=EXT, policy=FixedSteps(), controls=LiveControls(), encode_prompt=None)


def test_stop_requested_before_the_first_chunk_and_cancel(tiny_cw, texts):
    ctl = LiveControls()
    ctl.stop()
    res = live_run(tiny_cw, texts[0], ctl, ladder=EXT, policy=FixedSteps(), encode_prompt=None)
    assert res.latent.shape[2] == 0 and res.record.chunks == []
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 6  # inside the second chunk

    with pytest.raises(SamplingInterrupted) as e:
        live_run(
            tiny_cw, texts[0], LiveControls(), ladder=EXT, policy=FixedSteps(), encode_prompt=None, should_cancel=cancel
        )
    assert e.value.latent.shape[2] == 3 and e.value.record.interrupted


def test_requests_are_checked_and_the_latest_wins():
    ctl = LiveControls()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ctl.change_threshold(1.5)
    ctl.change_prompt("x", 1)
    ctl.change_prompt("y", 2)
    ctl.change_threshold(0.3)
    got = ctl.take()
    assert got.prompt == ("y", 2) and got.threshold == 0.3 and not got.stop
    assert ctl.take().prompt is None
    with pytest.raises(ValueError, match="no threshold"):
        with_threshold(FixedSteps(), 0.5)
    p = ConfidencePolicy(0.5, 1, 6)
    assert with_threshold(p, 0.8).threshold == 0.8 and p.threshold == 0.5  # a copy; the policy given is unchanged
