"""UI-format workflows (what the ComfyUI front end saves and loads) built from compact specs, and converted back
to API format the way the front end's graphToPrompt does, both driven by the host's /object_info.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FRONTEND_ONLY = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


@dataclass
class N:
    """A node of a workflow spec: widgets by input name, links as input name -> (source node id, output slot)."""

    id: int
    type: str
    pos: tuple
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)
    title: str | None = None
    size: tuple | None = None
    text: str | None = None  # Note / MarkdownNote body


def _is_widget(spec) -> bool:
    typ = spec[0]
    return isinstance(typ, list) or typ in WIDGET_TYPES


def _inputs(info: dict):
    """(name, spec, optional) in the host's input order."""
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            yield name, spec, section == "optional"


def widget_names(info: dict) -> list[str]:
    return [name for name, spec, _ in _inputs(info) if _is_widget(spec)]


def _default(spec):
    typ, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if "default" in opts:
        return opts["default"]
    if isinstance(typ, list):
        return typ[0] if typ else ""
    if typ == "COMBO":
        return (opts.get("options") or [""])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[typ]


def build_ui(nodes: list[N], object_info: dict, extra: dict | None = None) -> dict:
    links, link_id = [], 0
    by_id = {n.id: n for n in nodes}
    ui_nodes, out_links = [], {}
    for n in nodes:
        for inp, (src, slot) in n.links.items():
            link_id += 1
            src_info = object_info[by_id[src].type]
            typ = src_info["output"][slot]
            links.append([link_id, src, slot, n.id, inp, typ])
            out_links.setdefault((src, slot), []).append(link_id)
    for order, n in enumerate(nodes):
        if n.type in FRONTEND_ONLY:
            ui_nodes.append(
                {
                    "id": n.id,
                    "type": n.type,
                    "pos": list(n.pos),
                    "size": list(n.size or (420, 200)),
                    "flags": {},
                    "order": order,
                    "mode": 0,
                    "inputs": [],
                    "outputs": [],
                    "properties": {},
                    "widgets_values": [n.text or ""],
                    **({"title": n.title} if n.title else {}),
                }
            )
            continue
        info = object_info[n.type]
        unknown = set(n.widgets) - set(widget_names(info))
        if unknown:
            raise KeyError(f"{n.type} has no widgets {unknown}")
        inputs, values = [], []
        for name, spec, optional in _inputs(info):
            if _is_widget(spec):
                values.append(n.widgets.get(name, _default(spec)))
                if len(spec) > 1 and spec[1].get("control_after_generate"):
                    values.append("fixed")
                continue
            lid = next((link[0] for link in links if link[3] == n.id and link[4] == name), None)
            inputs.append({"name": name, "type": spec[0], "link": lid, **({"shape": 7} if optional else {})})
        outputs = [
            {"name": oname, "type": otyp, "links": out_links.get((n.id, i), []), "slot_index": i}
            for i, (oname, otyp) in enumerate(zip(info["output_name"], info["output"]))
        ]
        node = {
            "id": n.id,
            "type": n.type,
            "pos": list(n.pos),
            "size": list(n.size or (320, 120)),
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": inputs,
            "outputs": outputs,
            "properties": {"Node name for S&R": n.type},
            "widgets_values": values,
        }
        if n.title:
            node["title"] = n.title
        ui_nodes.append(node)
    for link in links:  # the UI format stores the target slot index, not the input name
        target = next(u for u in ui_nodes if u["id"] == link[3])
        link[4] = next(i for i, s in enumerate(target["inputs"]) if s["name"] == link[4])
    return {
        "last_node_id": max(n.id for n in nodes),
        "last_link_id": link_id,
        "nodes": ui_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}, **(extra or {})},
        "version": 0.4,
    }


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """The API prompt the front end would queue for this workflow (muted and front-end-only nodes left out)."""
    links = {link[0]: link for link in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY or node.get("mode", 0) != 0:
            continue
        if node["type"] not in object_info:
            raise KeyError(f"node type {node['type']} (node {node['id']}) is not registered in the host")
        info = object_info[node["type"]]
        inputs, values = {}, list(node.get("widgets_values") or [])
        for name, spec, _ in _inputs(info):
            if _is_widget(spec):
                if not values:
                    # a workflow saved before this widget was appended: the front end keeps the widget's default
                    if len(spec) > 1 and "default" in spec[1]:
                        inputs[name] = spec[1]["default"]
                        continue
                    raise ValueError(f"node {node['id']} ({node['type']}) has too few widget values at {name}")
                inputs[name] = values.pop(0)
                if len(spec) > 1 and spec[1].get("control_after_generate"):
                    values.pop(0)
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                link = links[slot["link"]]
                inputs[slot["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def host_neutral(ui: dict, object_info: dict, pack_module: str) -> dict:
    """A workflow without what only the host version decides: unconnected outputs of the host's own nodes.

    Newer hosts declare outputs on nodes that had none (ComfyUI 0.33's PreviewImage and SaveAnimatedWEBP return
    IMAGE); the front end takes a node's outputs from the host it runs on, so a saved workflow without them loads
    the same. The pack's own nodes are compared whole."""
    out = {**ui, "nodes": []}
    for node in ui["nodes"]:
        info = object_info.get(node["type"], {})
        if info.get("python_module") != pack_module and node.get("outputs"):
            node = {**node, "outputs": [o for o in node["outputs"] if o.get("links")]}
        out["nodes"].append(node)
    return out
