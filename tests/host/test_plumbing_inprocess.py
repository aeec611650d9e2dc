"""Tier (a): the pack loads into the real host in-process, and a prompt validates and runs through it."""

import torch
from graphs import host_ksampler_graph, ladder_graph
from host_events import assert_progress_reaches


def test_pack_nodes_registered(inprocess_host):
    assert {"DSANoiseLadder", "DSAPromptEmbedding"} <= inprocess_host.pack_nodes


def test_ladder_round_trip(inprocess_host):
    res = inprocess_host.run(ladder_graph("self_forcing", extra_steps=2))
    assert res.success, res.error()
    sigmas, summary = res.outputs["1"][0][0], res.outputs["1"][1][0]
    assert torch.allclose(sigmas[:4], torch.tensor([1.0, 0.9375, 5 / 6, 0.625]), atol=1e-6)
    assert sigmas.shape == (7,) and sigmas[-1] == 0 and bool((sigmas[:-1].diff() < 0).all())
    assert "6 levels" in summary
    names = res.event_names()
    assert names[0] == "execution_start" and names[-1] == "execution_success"
    assert ("executed",) and any(e == "executed" and d["node"] == "2" for e, d in res.events)


def test_bad_custom_ladder_is_a_node_error(inprocess_host):
    ok, err, _, node_errors = inprocess_host.validate(ladder_graph("custom", custom="1000, 800, 900"))
    assert not ok
    details = node_errors["1"]["errors"][0]["details"]
    assert "strictly decrease" in details


def test_prompt_embedding_conditions_host_sampler(inprocess_host, tiny_models):
    res = inprocess_host.run(host_ksampler_graph(tiny_models["wan"], tiny_models["prompt_a"]))
    assert res.success, res.error()
    progress = [d for e, d in res.events if e == "progress" and d["node"] == "4"]
    # how often the host forwards its own sampler's steps is the host's choice (newer hosts throttle to 100 ms);
    # what the plumbing must give is rising progress that ends at the step count
    assert_progress_reaches(progress, 3)
    latent = res.outputs["4"][0][0]["samples"]
    assert latent.shape == (1, 16, 2, 4, 4) and torch.isfinite(latent).all()
