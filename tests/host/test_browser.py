"""The real ComfyUI front end in headless Chromium, under both of its node renderers: the classic LiteGraph canvas
and the Vue-based one ("Nodes 2.0", the front-end setting Comfy.VueNodes.Enabled). In each: the extension loads,
every template loads cleanly and converts to a valid prompt, the preset and threshold widgets stay in sync, and
running the toy graph redraws the step chart per chunk (screenshots kept in test-artifacts/browser/)."""

import base64
import json
import os
import re
from pathlib import Path

import browser as browser_mod
import pytest
from selenium.webdriver.common.by import By
from workflow_tools import ui_to_api

from dsa_core.confidence_head import load_head
from dsa_core.toy import MODEL_FILE

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("DSA_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
READY = "window.app && window.app.graph && window.__dsa && window.__dsa.loaded && window.LiteGraph"
VUE_SETTING = "Comfy.VueNodes.Enabled"
RENDERERS = ("canvas", "vue")
DSA_NODE_TYPES = ("DSASampler", "DSAExtend", "DSALive")
# The toy model's head carries a calibration table: its presets are thresholds of a given cost (calibration.py).
TOY_TABLE = load_head(MODEL_FILE).calibration
QUALITY = TOY_TABLE.presets["quality"] if TOY_TABLE is not None else 0.9


@pytest.fixture(scope="module", params=RENDERERS)
def page(request, server_host, tmp_path_factory):
    """One browser per renderer; the renderer is the user's setting, stored on the server before the page opens."""
    renderer = request.param
    problem = browser_mod.available()
    if problem:
        pytest.fail(problem)
    if os.environ.get("DSA_SLIM_HOST") == "1":
        pytest.fail("browser tests need the full host (the real front end); unset DSA_SLIM_HOST")
    # A returning user, not a first start: no template browser or tours over the canvas.
    settings = {
        "Comfy.TutorialCompleted": True,
        "Comfy.Workflow.ShowMissingModelsWarning": False,
        VUE_SETTING: renderer == "vue",
    }
    for setting, value in settings.items():
        server_host.request(f"/settings/{setting}", value, method="POST")
    b = browser_mod.Browser(tmp_path_factory.mktemp(f"chrome-{renderer}"))
    b.renderer = renderer
    try:
        b.open(server_host.url, READY)
        if renderer == "vue" and not b.driver.execute_script(
            f"return window.app.extensionManager?.setting?.get('{VUE_SETTING}') === true"
        ):
            pytest.fail(f"this front end has no Vue node renderer ({VUE_SETTING} did not take)")
        close_dialogs(b)
        b.baseline = [e for e in b.console() if e["level"] == "SEVERE"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"console_baseline_{renderer}.json").write_text(json.dumps(b.baseline, indent=1))
        yield b
    finally:
        b.quit()


def close_dialogs(page):
    page.driver.execute_script(
        "document.querySelectorAll('.p-dialog-close-button, .p-dialog-header-close').forEach(x => x.click());"
    )


_OFF_HOST = re.compile(r"https?://(?!127\.0\.0\.1[:/])[^\s'\"]+")


def offline_noise(message: str) -> bool:
    """The front end reaching off-host, refused by the host's own Content Security Policy: the online node registry
    (api.comfy.org) for every custom node, and in newer front ends a missing-model check of its own default graph
    (huggingface.co). This machine is offline by design and the pack's script never connects off-host, so these
    say nothing about the pack."""
    return (
        "Content Security Policy" in message
        and bool(_OFF_HOST.search(message))
        and "/extensions/ComfyUI-DSA/" not in message
    )


def new_errors(page):
    seen = {(e["message"]) for e in page.baseline}
    errors = [
        e
        for e in page.console()
        if e["level"] == "SEVERE" and e["message"] not in seen and not offline_noise(e["message"])
    ]
    page.baseline += errors
    return errors


def load(page, ui, name="test"):
    """Load a UI-format workflow and let the renderer mount it."""
    page.run_async("await window.app.loadGraphData(args[0], true, true, args[1]);", ui, name)
    if page.renderer == "vue":
        page.wait_for(f"document.querySelectorAll('[data-node-id]').length >= {len(ui['nodes'])}", timeout=30)


def test_extension_script_loaded(page):
    assert page.driver.execute_script("return window.__dsa.loaded") is True
    presets = page.run_async("return await (await window.comfyAPI.api.api.fetchApi('/dsa/presets')).json();")
    assert presets["balanced"] == 0.75
    # the baseline holds only the host's own first-start noise, nothing from this pack
    assert not [e for e in page.baseline if "ComfyUI-DSA" in e["message"] or "dsa" in e["message"].lower()]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_without_missing_nodes_or_errors(page, server_host, workflow_model_files, path):
    ui = json.loads(path.read_text())
    load(page, ui)
    result = page.run_async(
        """
        const wf = args[0];
        const missing = wf.nodes.map(n => n.type).filter(t => !window.LiteGraph.registered_node_types[t]);
        const p = await window.app.graphToPrompt();
        const charts = window.app.graph._nodes.filter(n => n.__dsaCanvas).map(n => String(n.id));
        const vueNodes = document.querySelectorAll('[data-node-id]').length;
        const vueCharts = [...document.querySelectorAll('[data-node-id]')]
            .filter(el => { const c = el.querySelector('canvas.dsa-step-chart'); return c && c.clientWidth > 0; })
            .map(el => el.getAttribute('data-node-id'));
        return {missing, output: p.output, nodes: window.app.graph._nodes.length, charts, vueNodes, vueCharts};
    """,
        ui,
    )
    assert result["missing"] == []
    assert result["nodes"] == len(ui["nodes"])
    assert new_errors(page) == []
    ours = ui_to_api(ui, server_host.object_info)
    theirs = result["output"]
    assert set(theirs) == set(ours)
    for node_id, node in ours.items():
        assert theirs[node_id]["class_type"] == node["class_type"]
        assert theirs[node_id]["inputs"] == node["inputs"], node_id
    # node ids: numbers in the saved file, strings in newer front ends; compare as the prompt's strings
    samplers = sorted(str(n["id"]) for n in ui["nodes"] if n["type"] in DSA_NODE_TYPES)
    assert sorted(result["charts"]) == samplers
    if page.renderer == "vue":
        assert result["vueNodes"] == len(ui["nodes"]), "the Vue renderer did not draw the nodes"
        assert sorted(result["vueCharts"]) == samplers, "a chart is missing or invisible in a Vue node"
    else:
        assert result["vueNodes"] == 0, "the classic canvas renderer was asked for, but Vue nodes are shown"


def vue_widget_controls(page, node_id: str, name: str):
    """The <input> and the step-down button of a number widget's row in a Vue node (the row's first element is the
    widget's label)."""
    found = page.driver.execute_script(
        """
        const [id, name] = arguments;
        const rows = [...document.querySelectorAll(`[data-node-id="${id}"] div[node-id="${id}"]`)];
        const row = rows.find(r => r.firstElementChild && r.firstElementChild.textContent.trim() === name);
        if (!row) return null;
        const minus = [...row.querySelectorAll('button')].find(b => b.innerHTML.includes('minus'));
        return [row.querySelector('input'), minus];
    """,
        node_id,
        name,
    )
    assert found and all(found), f"no input or step-down button for widget {name} in Vue node {node_id}"
    return found


WIDGETS_JS = """const n = window.app.graph._nodes.find(n => n.comfyClass === 'DSASampler');
    const w = Object.fromEntries(n.widgets.filter(w => w.name.startsWith('threshold')).map(w => [w.name, w.value]));
    return w;"""


def wait_for_expected(page, node_id, condition="true", timeout=45):
    """Until the node's chart holds an expected cost (from POST /dsa/expected) that meets ``condition`` (JS on e)."""
    try:
        page.wait_for(
            f"(() => {{ const c = window.__dsa.charts[String({json.dumps(str(node_id))})]; const e = c && c.expected;"
            f" return !!e && ({condition}); }})()",
            timeout=timeout,
        )
    except TimeoutError:
        chart = page.driver.execute_script(f"return window.__dsa.charts[{json.dumps(str(node_id))}]")
        raise AssertionError(f"the chart's expected cost never met {condition}: {chart}") from None
    return page.driver.execute_script(f"return window.__dsa.charts[{json.dumps(str(node_id))}]")


def test_threshold_preset_and_threshold_stay_in_sync(page):
    ui = json.loads((REPO / "workflows" / "dsa_toy_demo.json").read_text())
    load(page, ui, "presets")
    wait_for_expected(page, next(n["id"] for n in ui["nodes"] if n["type"] == "DSASampler"), "e.calibrated")
    if page.renderer == "vue":
        # the user's own clicks in the Vue node, and what the node then shows
        node_id = next(str(n["id"]) for n in ui["nodes"] if n["type"] == "DSASampler")
        d = page.driver
        preset = d.find_element(
            By.CSS_SELECTOR, f'[data-node-id="{node_id}"] [role="combobox"][aria-label="threshold_preset"]'
        )
        preset.click()
        # the list renders its options before their labels: wait for the one to click, not just any option
        page.wait_for(
            "[...document.querySelectorAll('[role=option]')].some(o => o.textContent.trim() === 'quality')",
            timeout=10,
        )
        options = d.find_elements(By.CSS_SELECTOR, '[role="option"]')  # textContent: also when scrolled off-screen
        next(o for o in options if (o.get_attribute("textContent") or "").strip() == "quality").click()
        # the widget holds the preset's threshold at its 0.01 precision
        page.wait_for("Math.abs((() => { " + WIDGETS_JS + f" }})().threshold - {QUALITY!r}) <= 0.005", timeout=10)
        thr_input, thr_minus = vue_widget_controls(page, node_id, "threshold")
        shown_after_preset = thr_input.get_attribute("value")
        after_preset = page.driver.execute_script(WIDGETS_JS)
        thr_minus.click()  # one step down: no longer the preset's value
        page.wait_for("(() => { " + WIDGETS_JS + " })().threshold_preset === 'custom'", timeout=10)
        after_edit = page.driver.execute_script(WIDGETS_JS)
        assert float(shown_after_preset) == pytest.approx(QUALITY, abs=0.006)  # the widget shows 2 decimals
        assert preset.text.strip() == "custom" and float(thr_input.get_attribute("value")) < QUALITY
        edited = after_edit.pop("threshold")
        assert QUALITY - 0.1 <= edited < QUALITY
    else:
        # what the canvas does when the user picks a value: set it and call the widget's callback
        after_preset, after_edit = page.run_async("""
            const node = window.app.graph._nodes.find(n => n.comfyClass === 'DSASampler');
            const preset = node.widgets.find(w => w.name === 'threshold_preset');
            const thr = node.widgets.find(w => w.name === 'threshold');
            preset.value = 'quality'; preset.callback('quality');
            const a = {threshold_preset: preset.value, threshold: thr.value};
            thr.value = 0.33; thr.callback(0.33);
            return [a, {threshold_preset: preset.value, threshold: thr.value}];
        """)
        assert after_edit.pop("threshold") == 0.33
    assert after_preset.pop("threshold") == pytest.approx(QUALITY, abs=0.005)  # at the widget's 0.01 precision
    assert after_preset == {"threshold_preset": "quality"}
    assert after_edit == {"threshold_preset": "custom"}
    assert new_errors(page) == []


def test_running_toy_graph_updates_chart_per_chunk(page):
    ui = json.loads((REPO / "workflows" / "dsa_toy_demo.json").read_text())
    load(page, ui, "toy")
    node_id = next(n["id"] for n in ui["nodes"] if n["type"] == "DSASampler")
    close_dialogs(page)
    page.driver.execute_script(
        """
        const c = window.app.canvas, n = window.app.graph.getNodeById(arguments[0]);
        c.ds.scale = 1.0; c.ds.offset = [-n.pos[0] + 100, -n.pos[1] + 110]; c.setDirty(true, true);
    """,
        node_id,
    )  # the sampler in view, where the screenshots are taken
    page.driver.execute_script("return new Promise(r => setTimeout(r, 700))")
    # after the extension's own handler of each step event: what the chart holds and what its pixels are
    page.run_async(
        """
        const id = String(args[0]);
        // a seed of its own per renderer: the host would answer a repeated prompt from its cache, with no events
        const g = window.app.graph, sampler = g.getNodeById(Number(id)) ?? g.getNodeById(id);
        sampler.widgets.find(w => w.name === 'seed').value = args[1];
        window.__dsa.events = [];
        window.__chartTrace = [];
        window.comfyAPI.api.api.addEventListener('dsa.steps', ({detail}) => {
            if (String(detail.node) !== id) return;
            const g = window.app.graph, n = g.getNodeById(Number(detail.node)) ?? g.getNodeById(detail.node);
            const c = n && n.__dsaCanvas;
            window.__chartTrace.push({done: !!detail.done, chunks: (window.__dsa.charts[id] || {}).chunks || 0,
                                      pixels: c ? c.toDataURL() : '', width: c ? c.clientWidth : 0});
        });
        await window.app.queuePrompt(0, 1);
    """,
        node_id,
        100 + RENDERERS.index(page.renderer),
    )
    page.wait_for(f"window.__dsa.events.some(e => e.done && String(e.node) === '{node_id}')", timeout=240)
    trace = page.driver.execute_script("return window.__chartTrace")
    chart = page.driver.execute_script(f"return window.__dsa.charts['{node_id}']")
    assert [t["chunks"] for t in trace if not t["done"]] == [1, 2, 3, 4]  # redrawn per chunk (45 frames = 4 chunks)
    assert trace[-1]["done"] and "steps/frame" in chart["summary"]
    pixels = [t["pixels"] for t in trace]
    assert len(set(pixels)) == len(pixels), "the chart's pixels did not change with every event"
    assert all(t["width"] > 0 for t in trace), "the chart is not visible"
    page.screenshot(ARTIFACTS / f"toy_run_chart_{page.renderer}.png")
    # the sampler's chart as it drew itself (an element screenshot waits on the compositor, which the Vue renderer
    # of older front ends can keep busy past the driver's 10 s limit)
    url = page.driver.execute_script(
        "const n = window.app.graph.getNodeById(Number(arguments[0])) ?? window.app.graph.getNodeById(arguments[0]);"
        "return n.__dsaCanvas.toDataURL('image/png');",
        node_id,
    )
    (ARTIFACTS / f"toy_run_chart_widget_{page.renderer}.png").write_bytes(base64.b64decode(url.split(",", 1)[1]))
    assert new_errors(page) == []


def test_event_log_is_bounded(page):
    """The test hook keeps only the most recent events, however long the session runs."""
    got = page.driver.execute_script("""
        window.__dsa.events = [];
        const api = window.comfyAPI.api.api, size = window.__dsa.eventLogSize;
        for (let i = 0; i < size + 50; i++)
            api.dispatchEvent(new CustomEvent('dsa.steps', {detail: {node: 'no-such-node', chunk: i, seq: i}}));
        const ev = window.__dsa.events;
        return {size, length: ev.length, first: ev[0].seq, last: ev[ev.length - 1].seq};
    """)
    assert got["length"] == got["size"] == 200
    assert (got["first"], got["last"]) == (50, 249)
    assert new_errors(page) == []


def test_shift_patch_the_schedule_ignores_shows_on_the_sampler(page):
    """A ModelSamplingSD3 (shift 3) put between the toy loader and the sampler (schedule self_forcing): after the run
    the sampler's chart carries the run's hint to use schedule 'model'."""
    ui = json.loads((REPO / "workflows" / "dsa_toy_demo.json").read_text())
    load(page, ui, "toy-shift")
    node_id = next(n["id"] for n in ui["nodes"] if n["type"] == "DSASampler")
    close_dialogs(page)
    page.run_async(
        """
        const g = window.app.graph, sampler = g.getNodeById(Number(args[0])) ?? g.getNodeById(String(args[0]));
        const slot = sampler.inputs.findIndex(i => i.name === 'model');
        const lid = sampler.inputs[slot].link, link = g.links.get?.(lid) ?? g.links[lid];
        const source = g.getNodeById(link.origin_id);
        const shift = window.LiteGraph.createNode('ModelSamplingSD3');
        g.add(shift);
        shift.widgets.find(w => w.name === 'shift').value = 3.0;
        source.connect(link.origin_slot, shift, 0);
        shift.connect(0, sampler, slot);
        sampler.widgets.find(w => w.name === 'seed').value = args[1];
        window.__dsa.events = [];
        await window.app.queuePrompt(0, 1);
    """,
        node_id,
        200 + RENDERERS.index(page.renderer),
    )
    page.wait_for(f"window.__dsa.events.some(e => e.done && String(e.node) === '{node_id}')", timeout=240)
    notes = page.driver.execute_script(f"return window.__dsa.charts['{node_id}'].notes")
    assert any("shift 3.0" in n and "use schedule 'model'" in n for n in notes), notes
    page.screenshot(ARTIFACTS / f"shift_hint_{page.renderer}.png")
    url = page.driver.execute_script(
        "const n = window.app.graph.getNodeById(Number(arguments[0])) ?? window.app.graph.getNodeById(arguments[0]);"
        "return n.__dsaCanvas.toDataURL('image/png');",
        node_id,
    )
    (ARTIFACTS / f"shift_hint_chart_{page.renderer}.png").write_bytes(base64.b64decode(url.split(",", 1)[1]))
    assert new_errors(page) == []


def chart_has_colour(page, node_id, rgb) -> bool:
    """Whether the node's chart canvas holds a pixel of colour ``rgb`` (a line drawn in it)."""
    return page.driver.execute_script(
        """
        const g = window.app.graph, n = g.getNodeById(Number(arguments[0])) ?? g.getNodeById(arguments[0]);
        const c = n.__dsaCanvas, [r, gg, b] = arguments[1];
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i] === r && d[i + 1] === gg && d[i + 2] === b) return true;
        return false;
    """,
        str(node_id),
        list(rgb),
    )


def test_expected_cost_before_a_run_and_measured_beside_it_after(page):
    """The sampler shows the expected mean steps and speed-up from the head's calibration table before the run,
    following the preset, the slider and the policy; after a budget run the measured figure stands beside it and
    the chart draws the budget line."""
    assert TOY_TABLE is not None, "the toy model has no calibration table (python -m dsa_core.calibrate_presets)"
    ui = json.loads((REPO / "workflows" / "dsa_toy_demo.json").read_text())
    load(page, ui, "expected")
    node_id = next(n["id"] for n in ui["nodes"] if n["type"] == "DSASampler")
    set_widgets = """
        const g = window.app.graph, n = g.getNodeById(Number(args[0])) ?? g.getNodeById(args[0]);
        for (const [name, value] of args[1]) {
            const w = n.widgets.find(w => w.name === name); w.value = value; w.callback?.(value);
        }
    """
    # the demo's own setting: custom threshold 0.5
    c = wait_for_expected(page, node_id, "e.calibrated && e.threshold === 0.5")
    assert c["expected"]["mean_steps"] == pytest.approx(TOY_TABLE.mean_steps_at(0.5))
    assert c["measured"] is None
    # a preset: the head's threshold of that cost, and its expected speed-up
    page.run_async(set_widgets, node_id, [["threshold_preset", "balanced"]])
    bal = TOY_TABLE.presets["balanced"]
    c = wait_for_expected(page, node_id, f"e.threshold === {bal!r}")
    assert c["expected"]["speedup"] == pytest.approx(1 / TOY_TABLE.nfe_ratio_at(bal))
    # the slider: a custom threshold, expected from the table between its measured thresholds
    page.run_async(set_widgets, node_id, [["threshold", 0.55]])
    c = wait_for_expected(page, node_id, "e.threshold === 0.55")
    assert c["expected"]["mean_steps"] == pytest.approx(TOY_TABLE.mean_steps_at(0.55))
    # the budget: its mean, whatever the table
    page.run_async(
        set_widgets, node_id, [["policy", "budget"], ["mean_steps", 2.5], ["seed", 200 + len(page.renderer)]]
    )
    c = wait_for_expected(page, node_id, "e.source === 'head' && Math.abs(e.nfe_ratio - 0.7) < 1e-9")
    expected = c["expected"]
    page.run_async(
        """
        window.__dsa.events = [];
        await window.app.queuePrompt(0, 1);
    """
    )
    page.wait_for(f"window.__dsa.events.some(e => e.done && String(e.node) === '{node_id}')", timeout=240)
    c = page.driver.execute_script(f"return window.__dsa.charts['{node_id}']")
    report = page.driver.execute_script(
        f"return window.__dsa.events.find(e => e.done && String(e.node) === '{node_id}').report"
    )
    assert c["measured"]["speedup"] == pytest.approx(report["speedup"])
    assert c["measured"]["mean_steps"] == pytest.approx(report["mean_steps_per_chunk"])
    assert c["expected"]["nfe_ratio"] == pytest.approx(expected["nfe_ratio"])  # still beside it
    assert report["mean_steps_per_chunk"] <= 2.5 + 1e-9 and c["budget"] == 2.5
    assert chart_has_colour(page, node_id, (240, 210, 80)), "the budget line is not drawn"
    url = page.driver.execute_script(
        "const n = window.app.graph.getNodeById(Number(arguments[0])) ?? window.app.graph.getNodeById(arguments[0]);"
        "return n.__dsaCanvas.toDataURL('image/png');",
        node_id,
    )
    (ARTIFACTS / f"expected_budget_chart_{page.renderer}.png").write_bytes(base64.b64decode(url.split(",", 1)[1]))
    assert new_errors(page) == []
