"""DSA Live in the real front end, under both node renderers: the toy model plays on the node while it is being
generated; a prompt typed into the node and applied changes what the video shows (a grey background after "... on
grey"); the change is marked on the chart; Stop ends the run and the video comes back as the node's images; a page
loaded afterwards shows the run's chart again. Screenshots in test-artifacts/browser/."""

import pytest
from selenium.webdriver.common.by import By
from test_browser import ARTIFACTS, READY, RENDERERS, close_dialogs, new_errors, page  # noqa: F401

BUILD = """
const [seed] = args;
const LG = window.LiteGraph, graph = window.app.graph;
graph.clear();
const add = (type, x, y) => { const n = LG.createNode(type); n.pos = [x, y]; graph.add(n); return n; };
const loader = add('DSAModelLoader', 0, 0), prompt = add('DSAPromptEmbedding', 0, 200);
const vae = add('DSAToyVAE', 0, 360), live = add('DSALive', 360, 0), preview = add('PreviewImage', 800, 0);
const set = (n, name, v) => { const w = n.widgets.find(w => w.name === name); w.value = v; w.callback?.(v); };
set(loader, 'generator', 'dsa_toy_wan.safetensors');
set(prompt, 'embedding', 'toy_magenta_square_sitting_still_on_black.safetensors');
set(vae, 'scale', 4);
for (const [k, v] of Object.entries({seed, width: 64, height: 64, max_frames: 0, policy: 'confidence',
        threshold_preset: 'custom', threshold: 0.5, max_steps: 6, cache_window: 6, sink_frames: 0}))
    set(live, k, v);
loader.connect(0, live, live.findInputSlot('model'));
loader.connect(1, live, live.findInputSlot('head'));
prompt.connect(0, live, live.findInputSlot('positive'));
vae.connect(0, live, live.findInputSlot('vae'));
live.connect(3, preview, preview.findInputSlot('images'));
// the whole (tall) live node on screen, so its box and buttons can be clicked as a user would
const c = window.app.canvas; c.ds.scale = 0.8; c.ds.offset = [40, 40]; c.setDirty(true, true);
const t = window.__dsaLiveTest = {executed: null, end: null, live: live.id, preview: preview.id};
if (!window.__dsaLiveListeners) {
    window.__dsaLiveListeners = true;
    const api = window.comfyAPI.api.api;
    api.addEventListener('executed', ({detail}) => {
        const s = window.__dsaLiveTest;
        if (s && String(detail.node) === String(s.preview)) s.executed = detail.output;
    });
    api.addEventListener('execution_success', () => { if (window.__dsaLiveTest) window.__dsaLiveTest.end = 1; });
}
await window.app.queuePrompt(0, 1);
return live.id;
"""

# mean brightness of the player's buffered frames from video frame `a` (inclusive) to `b` (exclusive)
BRIGHTNESS = """
const [id, a, b] = args;
const p = window.app.graph.getNodeById(id).__dsaPlayer;
const c = document.createElement('canvas'), ctx = c.getContext('2d');
let sum = 0, n = 0;
for (let i = Math.max(a, p.firstIndex); i < Math.min(b, p.firstIndex + p.frames.length); i++) {
    const img = p.frames[i - p.firstIndex];
    if (!img.complete) await new Promise(r => img.onload = r);
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let s = 0; for (let k = 0; k < d.length; k += 4) s += (d[k] + d[k + 1] + d[k + 2]) / 3;
    sum += s / (d.length / 4); n += 1;
}
return n ? sum / n / 255 : null;
"""


def press(b, node_id, label):
    """A click on the node's button: the real DOM button in the Vue renderer, the widget's click handler on the
    classic canvas (where widgets are drawn, not DOM elements)."""
    if b.renderer == "vue":
        buttons = b.driver.find_elements(By.CSS_SELECTOR, f'[data-node-id="{node_id}"] button')
        match = [b for b in buttons if label in b.text]
        assert match, f"no '{label}' button in the Vue node"
        b.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", match[0])
        match[0].click()
    else:
        b.driver.execute_script(
            "const n = window.app.graph.getNodeById(arguments[0]);"
            "const w = n.widgets.find(w => w.name === arguments[1]);"
            "w.callback(w, window.app.canvas, n, [0, 0], {});",
            node_id,
            label,
        )


def type_prompt(b, node_id, text):
    """Type into the node's live_prompt box: its textarea (a DOM element in both renderers), keys sent as a user's."""
    sel = f'[data-node-id="{node_id}"] textarea' if b.renderer == "vue" else "textarea"
    boxes = [
        box
        for box in b.driver.find_elements(By.CSS_SELECTOR, sel)
        if box.is_displayed()
        and b.driver.execute_script(
            "const n = window.app.graph.getNodeById(arguments[1]);"
            "const w = n.widgets.find(w => w.name === 'live_prompt');"
            "return arguments[0] === (w.inputEl || w.element) || arguments[2];",
            box,
            node_id,
            b.renderer == "vue",
        )
    ]
    assert boxes, "the live_prompt box is not in the page"
    b.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", boxes[0])
    boxes[0].click()
    boxes[0].clear()
    boxes[0].send_keys(text)
    b.wait_for(
        f"window.app.graph.getNodeById({node_id}).widgets.find(w => w.name === 'live_prompt').value === {text!r}",
        timeout=10,
    )


def live(b, node_id):
    return b.driver.execute_script(f"return (window.__dsa.live || {{}})[{node_id}] || null")


def test_live_node_plays_takes_a_typed_prompt_and_stops(page):  # noqa: F811
    close_dialogs(page)
    page.driver.set_window_size(1600, 2000)  # the tall live node whole on screen at a zoom that shows its widgets
    node_id = page.run_async(BUILD, 900 + RENDERERS.index(page.renderer))
    if page.renderer == "vue":
        page.wait_for(f"document.querySelector('[data-node-id=\"{node_id}\"]')", timeout=30)
    # it plays while it is generated: frames arrive on the node chunk after chunk while the run goes on
    page.wait_for(f"(window.__dsa.players[{node_id}] || {{}}).received >= 24", timeout=180)
    assert live(page, node_id)["running"] is True
    log = page.driver.execute_script(f"return window.__dsa.players[{node_id}].log")
    counts = [c for _, c in log]
    assert counts == sorted(counts) and len(set(counts)) >= 5
    assert page.driver.execute_script(f"return window.__dsa.players[{node_id}].fps") == 4  # the toy's frame rate
    # a typed prompt, applied: it takes effect at a later chunk and the background turns grey
    type_prompt(page, node_id, "cyan disc drifting up on grey")
    press(page, node_id, "apply prompt")
    page.wait_for(f"window.__dsa.live[{node_id}].changes.length >= 1", timeout=60)
    change = live(page, node_id)["changes"][0]
    assert change["kind"] == "prompt" and change["value"] == "cyan disc drifting up on grey"
    at = change["chunk"]
    page.wait_for(f"window.__dsa.players[{node_id}].received >= {3 * (at + 6)}", timeout=120)
    before = page.run_async(BRIGHTNESS, node_id, max(0, 3 * at - 12), 3 * at)
    after = page.run_async(BRIGHTNESS, node_id, 3 * (at + 2), 3 * (at + 6))
    assert after > before + 0.1, (before, after)
    page.wait_for(f"window.__dsa.live[{node_id}].marks >= 1", timeout=10)  # marked on the chart
    # Stop: the run ends at a chunk boundary and its video comes back as the node's images
    press(page, node_id, "stop")
    page.wait_for("window.__dsaLiveTest.end !== null && window.__dsaLiveTest.executed !== null", timeout=120)
    state = live(page, node_id)
    assert state["running"] is False
    images = page.driver.execute_script("return window.__dsaLiveTest.executed.images.length")
    chunks = state["chunks"]
    assert chunks > at + 6 and images == 3 * chunks
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(ARTIFACTS / f"live_node_{page.renderer}.png")
    assert new_errors(page) == []
    # a page loaded after the run: the same workflow comes back and asks the server where the run stands
    page.driver.refresh()
    page.wait_for(READY, timeout=90)
    close_dialogs(page)
    page.wait_for(f"(window.__dsa.live || {{}})[{node_id}] && window.__dsa.live[{node_id}].chunks > 0", timeout=60)
    restored = live(page, node_id)
    assert restored["running"] is False and [c["kind"] for c in restored["changes"]] == ["prompt"]
    assert page.driver.execute_script(f"return window.__dsa.charts[{node_id}].chunks") == restored["chunks"]
    page.wait_for(f"(window.__dsa.players[{node_id}] || {{}}).received > 0", timeout=30)
    page.screenshot(ARTIFACTS / f"live_node_reloaded_{page.renderer}.png")


@pytest.fixture(autouse=True)
def _no_leftover_run(page):  # noqa: F811
    yield
    page.driver.execute_script("window.comfyAPI.api.api.fetchApi('/interrupt', {method: 'POST'})")
