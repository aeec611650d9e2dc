"""Bad graph inputs through the host's own validation and execution (tests/bad_inputs.py holds the cases): one
clear message each, at queue time filed under the input it concerns, or one execution error from the node."""

import pytest
from bad_inputs import CASES, case_graph, check_execution_errors, check_node_errors, expected_when
from graphs import dsa_graph


def host_version() -> str:
    import comfyui_version

    return comfyui_version.__version__


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_problem_one_message_on_its_input(inprocess_host, tiny_models, case):
    g = case_graph(case, tiny_models)
    ok, _err, _, node_errors = inprocess_host.validate(g)
    if expected_when(case, host_version()) == "queue":
        assert not ok
        check_node_errors(case, node_errors)
        return
    assert ok, node_errors
    res = inprocess_host.run(g, executor=inprocess_host.executor("none"))
    assert not res.success
    check_execution_errors(case, [d for e, d in res.events if e == "execution_error"])


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
    res = inprocess_host.run(g, executor=inprocess_host.executor("none"))
    msg = res.error()["exception_message"]
    assert "use length 4089" in msg and "4101" not in msg
