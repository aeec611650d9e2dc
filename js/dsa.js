// ComfyUI-DSA front-end extension: listens for the pack's step-allocation events.
// The live chart on the sampler nodes is built on this (see README, "Watching where the steps went").
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXT = "comfyui-dsa";

app.registerExtension({
  name: `${EXT}.steps`,
  async setup() {
    window.__dsa = { loaded: true, events: [] };
    api.addEventListener("dsa.steps", (ev) => {
      window.__dsa.events.push(ev.detail);
    });
  },
});
