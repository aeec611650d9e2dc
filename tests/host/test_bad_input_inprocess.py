"""Out-of-range graph inputs through the host's own validation: one clear node error each, read from the
ranges the node schemas declare; suggestions stay inside those ranges."""

import pytest
from graphs import dsa_graph


def details(node_errors, node):
    return [e["details"] for e in node_errors[node]["errors"]]


def messages(node_errors, node):
    """The distinct messages of a node's errors (the host prefixes each with the input it is attached to)."""
    return {d.split(" - ", 1)[-1] for d in details(node_errors, node)}


@pytest.mark.parametrize(
    "node, changes, fragment",
    [
        ("3", {"width": 0}, "width 0 is below its minimum 16"),
        ("3", {"width": -16}, "width -16 is below its minimum 16"),
        ("3", {"height": 8208}, "height 8208 is above its maximum 8192"),
        ("3", {"length": -3}, "length -3 is below its minimum 1"),
        ("3", {"frames_per_chunk": 0}, "frames_per_chunk 0 is below its minimum 1"),
        ("3", {"min_steps": 0}, "min_steps 0 is below its minimum 1"),
        ("3", {"max_steps": 100}, "max_steps 100 is above its maximum 12"),
        ("3", {"sink_frames": -1}, "sink_frames -1 is below its minimum 0"),
        ("3", {"cache_window": 5000}, "cache_window 5000 is above its maximum 1024"),
        ("5", {"add_frames": 0}, "add_frames 0 is below its minimum 4"),
        ("5", {"frames_per_chunk": 0}, "frames_per_chunk 0 is below its minimum 1"),
        ("5", {"max_steps": 13}, "max_steps 13 is above its maximum 12"),
    ],
)
def test_validated_inputs_keep_their_widget_ranges(inprocess_host, tiny_models, node, changes, fragment):
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"])
    g[node]["inputs"].update(changes)
    _ok, _err, _, node_errors = inprocess_host.validate(g)  # (other outputs of the graph may still be valid)
    assert list(node_errors) == [node]
    (msg,) = messages(node_errors, node)  # one problem, one message (on each input validate_inputs takes)
    assert fragment in msg


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"extra_steps": 9}, "extra_steps 9 is above its maximum 8"),
        ({"custom_shift": 0.0}, "custom_shift 0.0 is below its minimum 0.01"),
    ],
)
def test_ladder_widgets_keep_their_ranges(inprocess_host, changes, fragment):
    from graphs import ladder_graph

    g = ladder_graph("custom")
    g["1"]["inputs"].update(changes)
    ok, _err, _, node_errors = inprocess_host.validate(g)
    assert not ok
    (msg,) = messages(node_errors, "1")
    assert fragment in msg


def test_ranges_follow_the_schema(inprocess_host, tiny_models):
    """The checks read the declared ranges: what the schema allows passes, one past it fails."""
    import nodes

    schema = nodes.NODE_CLASS_MAPPINGS["DSASampler"].INPUT_TYPES()["required"]
    hi = schema["max_steps"][1]["max"]
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, max_steps=hi)
    assert inprocess_host.validate(g)[0]
    g["3"]["inputs"]["max_steps"] = hi + 1
    assert not inprocess_host.validate(g)[0]


def test_suggested_lengths_stay_inside_the_widget_range(inprocess_host, tiny_models):
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, length=4097)
    ok, _err, _, node_errors = inprocess_host.validate(g)
    assert not ok
    (msg,) = messages(node_errors, "3")
    assert "use length 4089" in msg and "4101" not in msg


def test_threshold_range_is_the_hosts_own_single_message(inprocess_host, tiny_models):
    g = dsa_graph(tiny_models["wan_with_head"], tiny_models["prompt_a"], extend=False, threshold=1.5)
    ok, _err, _, node_errors = inprocess_host.validate(g)
    assert not ok
    errs = node_errors["3"]["errors"]
    assert len(errs) == 1 and errs[0]["extra_info"]["input_name"] == "threshold"
