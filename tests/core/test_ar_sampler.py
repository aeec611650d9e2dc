"""DSA's AR sampler on the real tiny generator: equivalence with the fixed sampler, early exit and extra refinement,
noise independence, continuation, prompt switches, callbacks and interruption.

NFE is counted by a wrapper around CausalWan.forward_chunk (never read from the sampler's record), and
the head is test-controlled (scripted confidences), so early exit / extra refinement are forced per chunk.
"""

import pytest
import torch
from torch import nn

from dsa_core.ar_sampler import SamplingInterrupted, sample_video
from dsa_core.ar_state import prime_with_latents, switch_prompt
from dsa_core.confidence_head import ConfidenceHead, HeadConfig
from dsa_core.policies import ConfidencePolicy, HeuristicPolicy
from dsa_core.schedules import extended_ladder, self_forcing_ladder

H, W, CF = 4, 6, 3
SF = self_forcing_ladder()
EXT = extended_ladder(SF, 6)


class Counting:
    """Wraps a CausalWan; records the timesteps of every forward_chunk call."""

    def __init__(self, cw):
        self.cw, self.calls = cw, []

    def forward_chunk(self, x, t, text, cache, frame_start):
        self.calls.append((frame_start, float(t.flatten()[0])))
        return self.cw.forward_chunk(x, t, text, cache, frame_start)

    def __getattr__(self, name):
        return getattr(self.cw, name)

    @property
    def nfe(self):
        return len(self.calls)


class ScriptedHead(nn.Module):
    """Returns the next scripted confidence each call (one call per denoising step); records calls."""

    def __init__(self, script):
        super().__init__()
        self.script, self.i = list(script), 0

    def forward(self, hidden, time_emb):
        v = self.script[self.i] if self.i < len(self.script) else 0.0
        self.i += 1
        return torch.full(hidden.shape[:2], v)


@pytest.fixture(scope="module")
def texts(tiny_cw):
    g = torch.Generator().manual_seed(5)
    return [tiny_cw.encode_text(torch.randn(1, 6, 4096, generator=g)) for _ in range(2)]


def run(model, text, **kw):
    kw.setdefault("latent_h", H)
    kw.setdefault("latent_w", W)
    kw.setdefault("chunk_frames", CF)
    kw.setdefault("seed", 11)
    return sample_video(model, text, **kw)


def test_threshold_above_every_confidence_equals_fixed(tiny_cw, texts):
    fixed, _, rec_f = run(tiny_cw, texts[0], num_frames=9)
    # a threshold > 1 ("never stop early") and a real head
    head = ConfidenceHead(HeadConfig(dim=128, hidden_dim=16))
    a, _, rec_a = run(tiny_cw, texts[0], num_frames=9, head=head, policy=ConfidencePolicy(1.5, 1, 4), ladder=EXT)
    # the user-facing maximum 1.0 with a head whose output stays below 1
    b, _, _ = run(
        tiny_cw, texts[0], num_frames=9, head=ScriptedHead([0.999] * 12), policy=ConfidencePolicy(1.0, 1, 4), ladder=EXT
    )
    assert torch.equal(fixed, a) and torch.equal(fixed, b)
    assert [c.steps for c in rec_f.chunks] == [4, 4, 4] == [c.steps for c in rec_a.chunks]
    assert rec_f.chunks[0].sigmas == list(SF.sigmas)
    assert {c.stop_reason for c in rec_f.chunks} == {"fixed"} and {c.stop_reason for c in rec_a.chunks} == {"max_steps"}
    assert all(c is not None for c in rec_a.chunks[0].confidence)  # the head filled the record


def test_threshold_zero_takes_one_step(tiny_cw, texts):
    m = Counting(tiny_cw)
    head = ConfidenceHead(HeadConfig(dim=128, hidden_dim=16))
    _, _, rec = run(m, texts[0], num_frames=9, head=head, policy=ConfidencePolicy(0.0, 1, 6), ladder=EXT)
    assert [c.steps for c in rec.chunks] == [1, 1, 1]
    assert m.nfe == 6 and [t for _, t in m.calls] == [1000.0, 0.0] * 3
    assert rec.speedup == pytest.approx(15 / 6)


def test_saturated_head_meets_threshold_one(tiny_cw, texts):
    head = ConfidenceHead(HeadConfig(dim=128, hidden_dim=16))
    with torch.no_grad():
        head.out.bias.fill_(100.0)
    _, _, rec = run(tiny_cw, texts[0], num_frames=6, head=head, policy=ConfidencePolicy(1.0, 2, 6), ladder=EXT)
    assert [c.steps for c in rec.chunks] == [2, 2] and rec.chunks[0].confidence == [1.0, 1.0]


def test_early_exit_and_extra_refinement_per_chunk(tiny_cw, texts):
    m = Counting(tiny_cw)
    # chunk 0: confident at step 2 -> 2 steps; chunk 1: never -> all 6 levels; chunk 2: not before
    # min_steps (step 1 is high), confident at step 3.
    script = [0.95, 0.95] + [0.1] * 6 + [0.99, 0.5, 0.91]
    pol = ConfidencePolicy(0.9, min_steps=2, max_steps=6)
    lat, state, rec = run(m, texts[0], num_frames=9, head=ScriptedHead(script), policy=pol, ladder=EXT)
    assert [c.steps for c in rec.chunks] == [2, 6, 3]
    assert [c.stop_reason for c in rec.chunks] == ["confident", "max_steps", "confident"]
    assert rec.chunks[1].confidence == pytest.approx([0.1] * 6)
    assert rec.chunks[2].confidence == pytest.approx([0.99, 0.5, 0.91])
    # the record matches what ran: NFE and the levels, from the wrapper
    assert m.nfe == rec.total_nfe == (2 + 1) + (6 + 1) + (3 + 1)
    expected = []
    for fs, steps in ((0, 2), (3, 6), (6, 3)):
        expected += [(fs, 1000.0 * s) for s in EXT.sigmas[:steps]] + [(fs, 0.0)]
    assert [c[0] for c in m.calls] == [e[0] for e in expected]
    assert [c[1] for c in m.calls] == pytest.approx([e[1] for e in expected])
    for c in rec.chunks:
        assert c.sigmas == list(EXT.sigmas[: c.steps]) and c.nfe == c.steps + 1
    assert rec.fixed_nfe == 15 and rec.speedup == pytest.approx(15 / 14)
    assert rec.mean_steps_per_frame == pytest.approx(11 / 3)
    assert lat.shape == (1, 16, 9, H, W) and torch.isfinite(lat).all()
    assert torch.equal(state.latents, lat) and state.nfe == 14


def test_noise_does_not_depend_on_earlier_step_counts(tiny_cw, texts):
    seen = {}

    class Recording:
        def __init__(self, seed):
            from dsa_core.noise import SeededNoise

            self.inner = SeededNoise(seed)

        def sample(self, key, step, shape, device=None, dtype=None):
            x = self.inner.sample(key, step, shape, device, dtype)
            seen.setdefault((key, step), []).append(x)
            return x

    pol = ConfidencePolicy(0.9, 1, 6)
    for script in ([0.95] + [0.1] * 6, [0.1] * 5 + [0.95] * 9):
        run(tiny_cw, texts[0], num_frames=6, noise=Recording(3), head=ScriptedHead(script), policy=pol, ladder=EXT)
    # chunk 1 (frames 3..5) starts from the same noise although chunk 0 took 1 step in one run, 5 in the other
    assert torch.equal(*seen[(3, 0)][:2])


@pytest.mark.parametrize("window, sink", [(None, 0), (6, 3)])
def test_continuation_equals_one_call(tiny_cw, texts, window, sink):
    kw = dict(window_frames=window, sink_frames=sink)
    pol = dict(head=ScriptedHead([0.3, 0.95] * 20), policy=ConfidencePolicy(0.9, 1, 6), ladder=EXT)
    full, full_state, _ = run(tiny_cw, texts[0], num_frames=12, **kw, **dict(pol, head=ScriptedHead([0.3, 0.95] * 20)))
    first, state, _ = run(tiny_cw, texts[0], num_frames=3, **kw, **dict(pol, head=ScriptedHead([0.3, 0.95] * 20)))
    before = (state.latents.clone(), state.cache.frames_written, state.nfe)
    m = Counting(tiny_cw)
    rest, st2, rec = sample_video(m, None, num_frames=9, state=state, **dict(pol, head=ScriptedHead([0.3, 0.95] * 20)))
    assert torch.equal(torch.cat([first, rest], 2), full)
    assert m.nfe == rec.total_nfe == 3 * 3  # nothing recomputed: 2 steps + commit per chunk
    assert [c.chunk_index for c in rec.chunks] == [1, 2, 3] and [c.frame_start for c in rec.chunks] == [3, 6, 9]
    # the input state was not mutated: branching it again gives the same frames
    assert torch.equal(state.latents, before[0]) and state.cache.frames_written == before[1] and state.nfe == before[2]
    again, _, _ = sample_video(
        tiny_cw, None, num_frames=9, state=state, **dict(pol, head=ScriptedHead([0.3, 0.95] * 20))
    )
    assert torch.equal(again, rest)
    assert torch.equal(st2.latents, full_state.latents)


def test_prime_with_latents_matches_generated_history(tiny_cw, texts):
    full, _, _ = run(tiny_cw, texts[0], num_frames=9)
    m = Counting(tiny_cw)
    st = prime_with_latents(m, texts[0], full[:, :, :3], chunk_frames=CF)
    assert m.nfe == 1 and m.calls == [(0, 0.0)]
    rest, _, _ = sample_video(tiny_cw, None, num_frames=6, state=st, seed=11)
    assert torch.equal(rest, full[:, :, 3:])
    # the same through sample_video's context_latents, counted as extra NFE
    m2 = Counting(tiny_cw)
    rest2, st2, rec = run(m2, texts[0], num_frames=6, context_latents=full[:, :, :3])
    assert torch.equal(rest2, rest) and rec.extra_nfe == 1 and m2.nfe == rec.total_nfe == 11
    assert st2.frames == 9


def test_prompt_switch_between_chunks(tiny_cw, texts):
    a, b = texts
    one, _, rec = run(tiny_cw, a, num_frames=9, prompt_schedule={1: b})
    assert rec.extra_nfe == 0
    first, st, _ = run(tiny_cw, a, num_frames=3)
    rest, _, _ = sample_video(tiny_cw, b, num_frames=6, state=st, seed=11)
    assert torch.equal(one, torch.cat([first, rest], 2))
    nosw, _, _ = run(tiny_cw, a, num_frames=9)
    assert torch.equal(one[:, :, :3], nosw[:, :, :3]) and not torch.equal(one[:, :, 3:], nosw[:, :, 3:])


def test_prompt_switch_recache(tiny_cw, texts):
    a, b = texts
    _, st, _ = run(tiny_cw, a, num_frames=9)
    m = Counting(tiny_cw)
    r_none, _, _ = sample_video(m, b, num_frames=3, state=st, recache="none")
    assert m.nfe == 5
    m = Counting(tiny_cw)
    r_all, _, rec = sample_video(m, b, num_frames=3, state=st, recache="all")
    assert rec.extra_nfe == 3 and m.nfe == 8 and m.calls[:3] == [(0, 0.0), (3, 0.0), (6, 0.0)]
    m = Counting(tiny_cw)
    r_recent, _, rec = sample_video(m, b, num_frames=3, state=st, recache=3)
    assert rec.extra_nfe == 1 and m.calls[0] == (6, 0.0)
    assert not torch.equal(r_none, r_all) and not torch.equal(r_recent, r_none)
    # recache='all' equals generating the history under b's cache from the same latents
    st_b = prime_with_latents(tiny_cw, b, st.latents, chunk_frames=CF)
    ref, _, _ = sample_video(tiny_cw, None, num_frames=3, state=st_b, seed=11)
    assert torch.equal(ref, r_all)
    # recaching recent frames in a rolling window is refused with a clear message
    _, st_w, _ = run(tiny_cw, a, num_frames=6, window_frames=3)
    with pytest.raises(ValueError, match="recache='all'"):
        switch_prompt(tiny_cw, st_w, b, recache=3)


def test_callbacks_and_interrupt(tiny_cw, texts):
    steps, chunks = [], []
    script = [0.95, 0.1, 0.1, 0.95, 0.95]
    pol = dict(head=ScriptedHead(script), policy=ConfidencePolicy(0.9, 1, 4), ladder=EXT)
    lat, st, rec = run(tiny_cw, texts[0], num_frames=9, callback=steps.append, chunk_callback=chunks.append, **pol)
    assert [(s.chunk_number, s.step, s.will_stop) for s in steps] == [
        (0, 1, True),
        (1, 1, False),
        (1, 2, False),
        (1, 3, True),
        (2, 1, True),
    ]
    assert steps[-1].steps_done_total == 5 and steps[0].steps_max_total == 12
    assert steps[0].x0.shape == (1, 16, 3, H, W) and steps[0].confidence.shape == (1, 3)
    assert [c.frame_start for c in chunks] == [0, 3, 6] and torch.equal(chunks[1].latent, lat[:, :, 3:6])

    # interrupt in the middle of chunk 1 of a continuation: the input state is untouched
    _, st0, _ = run(tiny_cw, texts[0], num_frames=3)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 6  # chunk 0 takes 4 checks, stop at the 3rd step of chunk 1

    with pytest.raises(SamplingInterrupted) as ei:
        sample_video(tiny_cw, None, num_frames=6, state=st0, should_stop=stop)
    assert ei.value.latent.shape[2] == 3 and ei.value.record.interrupted and len(ei.value.record.chunks) == 1
    ok, _, _ = sample_video(tiny_cw, None, num_frames=6, state=st0)
    ref, _, _ = sample_video(tiny_cw, None, num_frames=6, state=st0)
    assert torch.equal(ok, ref) and torch.equal(ei.value.latent, ok[:, :, :3])


def test_heuristic_policy_and_missing_head(tiny_cw, texts):
    m = Counting(tiny_cw)
    _, _, rec = run(m, texts[0], num_frames=6, policy=HeuristicPolicy(0.0, 1, 6), ladder=EXT)
    assert [c.steps for c in rec.chunks] == [2, 2]  # nothing to compare after step 1
    assert rec.chunks[0].confidence[0] is None and rec.chunks[0].confidence[1] is not None
    assert "heuristic" in rec.policy["label"] and m.nfe == rec.total_nfe == 6
    with pytest.raises(ValueError, match="confidence head"):
        run(tiny_cw, texts[0], num_frames=3, policy=ConfidencePolicy(0.5))
    with pytest.raises(ValueError, match="multiple of chunk_frames"):
        run(tiny_cw, texts[0], num_frames=4)


def test_batch_moves_together(tiny_cw, texts):
    g = torch.Generator().manual_seed(9)
    text = tiny_cw.encode_text(torch.randn(2, 6, 4096, generator=g))

    class PerSample(nn.Module):
        def forward(self, hidden, time_emb):  # sample 0 always confident, sample 1 never
            return torch.tensor([[1.0], [0.0]]).expand(-1, hidden.shape[1])

    lat, _, rec = run(tiny_cw, text, num_frames=3, head=PerSample(), policy=ConfidencePolicy(0.5, 1, 4))
    assert lat.shape[0] == 2 and rec.chunks[0].steps == 4  # the batch-min decides


def test_state_to_device_is_an_independent_copy(tiny_cw, texts):
    """Hosts park a finished state off the GPU between nodes and bring it back to continue."""
    _, state, _ = run(tiny_cw, texts[0], num_frames=3)
    parked = state.to("meta")
    assert parked.cache.device.type == "meta" and parked.latents.device.type == "meta"
    assert parked.text.kv[0][0].device.type == "meta"
    assert state.cache.device.type == "cpu" and state.latents.device.type == "cpu"
    back = state.to("cpu")
    a, _, _ = sample_video(tiny_cw, None, num_frames=3, state=back, seed=11)
    b, _, _ = sample_video(tiny_cw, None, num_frames=3, state=state, seed=11)
    assert torch.equal(a, b)
