"""The live player in the real front end: a toy run with DSA Toy VAE connected shows its frames on the sampler node
while the run is still executing (the player's frame count rises before the run ends), and the browser keeps a
bounded rolling buffer of them. Screenshot in test-artifacts/browser/."""

import json

from test_browser import ARTIFACTS, RENDERERS, REPO, new_errors, page  # noqa: F401  (page: the shared Chromium fixture)

LATENT_FRAMES = 135  # 45 chunks of 3: more frames than the player's rolling buffer (120) holds
PLAYER_BUFFER = 120


def test_frames_play_in_the_node_while_the_run_executes(page):  # noqa: F811
    ui = json.loads((REPO / "workflows" / "dsa_toy_demo.json").read_text())
    page.run_async(
        """
        const [wf, length, seed] = args;
        await window.app.loadGraphData(wf, true, true, 'streaming');
        const api = window.comfyAPI.api.api;
        const t = window.__dsaStreamTest = {steps: [], end: null};
        if (!window.__dsaStreamListeners) {
            window.__dsaStreamListeners = true;
            api.addEventListener('dsa.steps', ({detail}) => {
                const s = window.__dsaStreamTest;
                if (s && !detail.done) s.steps.push([performance.now(), detail.chunk,
                    (window.__dsa.players[detail.node] || {}).received || 0]);
            });
            api.addEventListener('execution_success', () => {
                if (window.__dsaStreamTest) window.__dsaStreamTest.end = performance.now();
            });
        }
        const sampler = window.app.graph._nodes.find(n => n.comfyClass === 'DSASampler');
        const vae = window.LiteGraph.createNode('DSAToyVAE');
        vae.pos = [sampler.pos[0] - 260, sampler.pos[1] + 420];
        window.app.graph.add(vae);
        vae.connect(0, sampler, sampler.findInputSlot('vae'));
        sampler.widgets.find(w => w.name === 'length').value = 4 * (length - 1) + 1;
        // a seed of its own per renderer: the host answers a repeated prompt from its cache, with no events
        sampler.widgets.find(w => w.name === 'seed').value = seed;
        window.__dsa.players = {};
        await window.app.queuePrompt(0, 1);
    """,
        ui,
        LATENT_FRAMES,
        500 + RENDERERS.index(page.renderer),
    )
    page.wait_for("window.__dsaStreamTest.end !== null", timeout=300)
    t = page.driver.execute_script("return window.__dsaStreamTest")
    sampler_id = page.driver.execute_script(
        "return window.app.graph._nodes.find(n => n.comfyClass === 'DSASampler').id"
    )
    player = page.driver.execute_script(f"return window.__dsa.players[{sampler_id}]")
    log = player["log"]
    counts = [c for _, c in log]
    # frames arrived chunk by chunk, all before the run ended ...
    assert counts == sorted(counts) and len(set(counts)) == len(counts) >= 10
    assert all(ts < t["end"] for ts, _ in log)
    # ... and were already on the node while later chunks were still being generated
    last_chunk = max(t["steps"], key=lambda s: s[1])
    assert last_chunk[1] == LATENT_FRAMES // 3 - 1 and last_chunk[2] > 0
    assert player["received"] == player["total"] == LATENT_FRAMES
    assert player["buffered"] == PLAYER_BUFFER  # bounded memory: a rolling buffer
    assert player["firstFrameS"] > 0 and player["fps"] == 4
    page.driver.execute_script(
        """
        document.querySelectorAll('.p-dialog-close-button, .p-dialog-header-close').forEach(x => x.click());
        const c = window.app.canvas, n = window.app.graph.getNodeById(arguments[0]);
        c.ds.scale = 1.0; c.ds.offset = [-n.pos[0] + 120, -n.pos[1] + 140]; c.setDirty(true, true);
    """,
        sampler_id,
    )
    page.driver.execute_script("return new Promise(r => setTimeout(r, 600))")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(ARTIFACTS / f"toy_run_live_player_{page.renderer}.png")
    canvas = page.driver.find_element("css selector", "canvas.dsa-live-player")
    canvas.screenshot(str(ARTIFACTS / f"toy_run_live_player_widget_{page.renderer}.png"))
    assert new_errors(page) == []
