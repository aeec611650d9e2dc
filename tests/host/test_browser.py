"""The real ComfyUI front end in headless Chromium: the extension loads, every template loads cleanly and converts to a
valid prompt, and running the toy graph draws the step chart (screenshots kept in test-artifacts/browser/)."""
import json
import os
from pathlib import Path

import pytest

import browser as browser_mod
from workflow_tools import FRONTEND_ONLY, ui_to_api

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("DSA_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
READY = "window.app && window.app.graph && window.__dsa && window.__dsa.loaded && window.LiteGraph"


@pytest.fixture(scope="module")
def page(server_host, tmp_path_factory):
    problem = browser_mod.available()
    if problem:
        pytest.fail(problem)
    if os.environ.get("DSA_SLIM_HOST") == "1":
        pytest.fail("browser tests need the full host (the real front end); unset DSA_SLIM_HOST")
    # A returning user, not a first start: no template browser or tours over the canvas.
    for setting in ("Comfy.TutorialCompleted", "Comfy.Workflow.ShowMissingModelsWarning"):
        server_host.request(f"/settings/{setting}", setting == "Comfy.TutorialCompleted", method="POST")
    b = browser_mod.Browser(tmp_path_factory.mktemp("chrome"))
    try:
        b.open(server_host.url, READY)
        b.driver.execute_script(
            "document.querySelectorAll('.p-dialog-close-button, .p-dialog-header-close').forEach(x => x.click());")
        b.baseline = [e for e in b.console() if e["level"] == "SEVERE"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "console_baseline.json").write_text(json.dumps(b.baseline, indent=1))
        yield b
    finally:
        b.quit()


def offline_noise(message: str) -> bool:
    """The front end looking up nodes in the online registry, refused by the host's own CSP: this test machine is
    offline by design, and the front end does it for every custom node, so it says nothing about the pack."""
    return "Content Security Policy" in message and "api.comfy.org" in message


def new_errors(page):
    seen = {(e["message"]) for e in page.baseline}
    errors = [e for e in page.console()
              if e["level"] == "SEVERE" and e["message"] not in seen and not offline_noise(e["message"])]
    page.baseline += errors
    return errors


def test_extension_script_loaded(page):
    assert page.driver.execute_script("return window.__dsa.loaded") is True
    presets = page.run_async("return await (await window.comfyAPI.api.api.fetchApi('/dsa/presets')).json();")
    assert presets["balanced"] == 0.75
    # the baseline holds only the host's own first-start noise, nothing from this pack
    assert not [e for e in page.baseline if "ComfyUI-DSA" in e["message"] or "dsa" in e["message"].lower()]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_without_missing_nodes_or_errors(page, server_host, workflow_model_files, path):
    ui = json.loads(path.read_text())
    result = page.run_async("""
        const wf = args[0];
        await window.app.loadGraphData(wf, true, true, 'test');
        const missing = wf.nodes.map(n => n.type).filter(t => !window.LiteGraph.registered_node_types[t]);
        const p = await window.app.graphToPrompt();
        const charts = window.app.graph._nodes.filter(n => n.__dsaCanvas).map(n => n.id);
        return {missing, output: p.output, nodes: window.app.graph._nodes.length, charts};
    """, ui)
    assert result["missing"] == []
    assert result["nodes"] == len(ui["nodes"])
    assert new_errors(page) == []
    ours = ui_to_api(ui, server_host.object_info)
    theirs = result["output"]
    assert set(theirs) == set(ours)
    for node_id, node in ours.items():
        assert theirs[node_id]["class_type"] == node["class_type"]
        assert theirs[node_id]["inputs"] == node["inputs"], node_id
    samplers = [n["id"] for n in ui["nodes"] if n["type"] in ("DSASampler", "DSAExtend")]
    assert sorted(result["charts"]) == sorted(samplers)


def test_threshold_preset_sets_threshold(page):
    ui = json.loads((REPO / "workflows" / "dsa_toy_demo.json").read_text())
    values = page.run_async("""
        await window.app.loadGraphData(args[0], true, true, 'presets');
        const node = window.app.graph._nodes.find(n => n.comfyClass === 'DSASampler');
        const preset = node.widgets.find(w => w.name === 'threshold_preset');
        const thr = node.widgets.find(w => w.name === 'threshold');
        preset.value = 'quality'; preset.callback('quality');
        const afterPreset = thr.value;
        thr.value = 0.33; thr.callback(0.33);
        return {afterPreset, presetAfterEdit: preset.value};
    """, ui)
    assert values == {"afterPreset": 0.9, "presetAfterEdit": "custom"}


def test_running_toy_graph_updates_chart(page):
    ui = json.loads((REPO / "workflows" / "dsa_toy_demo.json").read_text())
    page.run_async("""
        window.__dsa.events = [];
        await window.app.loadGraphData(args[0], true, true, 'toy');
        await window.app.queuePrompt(0, 1);
    """, ui)
    page.wait_for("window.__dsa.events.some(e => e.done && String(e.node) === '5')", timeout=240)
    chart = page.driver.execute_script("return window.__dsa.charts[5]")
    events = page.driver.execute_script("return window.__dsa.events.filter(e => String(e.node) === '5' && !e.done)")
    assert chart["chunks"] == len(events) == 4  # the toy template: 45 frames = 12 latent frames = 4 chunks of 3
    assert "steps/frame" in chart["summary"]
    page.driver.execute_script("""
        document.querySelectorAll('.p-dialog-close-button, .p-dialog-header-close').forEach(x => x.click());
        const c = window.app.canvas, n = window.app.graph.getNodeById(5);
        c.ds.scale = 1.0; c.ds.offset = [-n.pos[0] + 60, -n.pos[1] + 60]; c.setDirty(true, true);
    """)
    page.driver.execute_script("return new Promise(r => setTimeout(r, 500))")
    page.screenshot(ARTIFACTS / "toy_run_chart.png")
    canvas = page.driver.find_element("css selector", "canvas.dsa-step-chart")
    canvas.screenshot(str(ARTIFACTS / "toy_run_chart_widget.png"))
    assert new_errors(page) == []
