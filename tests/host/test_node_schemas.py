"""Saved workflows must keep loading: node ids, input names and widget order are a contract.

tests/host/node_schemas.json is the committed snapshot. The compatibility rule (ids stay, inputs stay, existing
widgets keep their order, new widgets only at the end) is enforced always; any other difference fails too, so
schema changes are deliberate. Regenerate after a compatible change with:
    DSA_UPDATE_SCHEMAS=1 bash scripts/test tests/host/test_node_schemas.py
"""

import json
import os
from pathlib import Path

from workflow_tools import widget_names

SNAPSHOT = Path(__file__).with_name("node_schemas.json")
PACK = "ComfyUI-DSA"


def current_schemas(object_info: dict) -> dict:
    out = {}
    for node_id, info in sorted(object_info.items()):
        if info.get("python_module") != f"custom_nodes.{PACK}":
            continue
        out[node_id] = {
            "display_name": info["display_name"],
            "category": info["category"],
            "inputs": [
                [name, spec[0] if isinstance(spec[0], str) else "COMBO", section]
                for section in ("required", "optional")
                for name, spec in info["input"].get(section, {}).items()
            ],
            "widgets": widget_names(info),
            "outputs": [[n, t] for n, t in zip(info["output_name"], info["output"])],
        }
    return out


def compatibility_problems(old: dict, new: dict) -> list[str]:
    problems = []
    for node_id, o in old.items():
        n = new.get(node_id)
        if n is None:
            problems.append(f"node {node_id} was removed")
            continue
        if n["widgets"][: len(o["widgets"])] != o["widgets"]:
            problems.append(f"{node_id}: widget order changed {o['widgets']} -> {n['widgets']}")
        missing = {i[0] for i in o["inputs"]} - {i[0] for i in n["inputs"]}
        if missing:
            problems.append(f"{node_id}: inputs removed or renamed: {sorted(missing)}")
        if [t for _, t in n["outputs"][: len(o["outputs"])]] != [t for _, t in o["outputs"]]:
            problems.append(f"{node_id}: output types changed {o['outputs']} -> {n['outputs']}")
    return problems


def test_node_schemas_match_snapshot(server_host):
    new = current_schemas(server_host.object_info)
    assert new, "no pack nodes found"
    old = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
    problems = compatibility_problems(old, new)
    assert not problems, "incompatible node schema change (saved workflows would break):\n" + "\n".join(problems)
    if os.environ.get("DSA_UPDATE_SCHEMAS") == "1":
        SNAPSHOT.write_text(json.dumps(new, indent=1) + "\n")
    assert new == old, (
        "node schemas differ from tests/host/node_schemas.json; if the change is intended and "
        "compatible, regenerate it (see this file's docstring)"
    )


def test_compatibility_rule_catches_breaking_changes():
    old = {
        "X": {
            "inputs": [["a", "INT", "required"], ["b", "FLOAT", "required"]],
            "widgets": ["a", "b"],
            "outputs": [["latent", "LATENT"]],
        }
    }
    reordered = {"X": {**old["X"], "widgets": ["b", "a"]}}
    appended = {
        "X": {**old["X"], "inputs": old["X"]["inputs"] + [["c", "INT", "required"]], "widgets": ["a", "b", "c"]}
    }
    assert compatibility_problems(old, reordered)
    assert compatibility_problems(old, {})
    assert compatibility_problems(old, appended) == []
