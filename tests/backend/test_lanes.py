"""Lanes: what a server lacks of a template's needs, recorded inventories, and the cannot_run notice."""

from __future__ import annotations

import json
from pathlib import Path

from backend.availability import cannot_run_notice
from backend.config import ComfyInstance, Settings
from backend.instances import InstanceState, Snapshot
from backend.lanes import Inventory, Needs, covers, missing, read_inventory

NEEDS = Needs.of({"nodes": ["KSampler", "PackNode"], "models": {"loras": ["a.safetensors"]}})
FULL = Inventory("a:1", frozenset({"KSampler", "PackNode"}), {"loras": frozenset({"a.safetensors"})})


def test_a_server_with_every_class_and_file_covers_the_needs() -> None:
    assert missing(NEEDS, FULL) == [] and covers(NEEDS, FULL)


def test_what_a_server_lacks_is_named_class_and_file() -> None:
    bare = Inventory("b:2", frozenset({"KSampler"}), {"loras": frozenset()})
    assert missing(NEEDS, bare) == ["class PackNode", "file loras/a.safetensors"]
    assert not covers(NEEDS, bare)


def test_a_server_not_looked_at_is_unknown_and_covers_nothing() -> None:
    unlisted = Inventory("c:3", frozenset({"KSampler", "PackNode"}), {})
    assert missing(NEEDS, unlisted) is None and not covers(NEEDS, unlisted)
    assert missing(NEEDS, Inventory("d:4", None)) is None
    assert not covers(NEEDS, None)


def test_a_recorded_inventory_reads_classes_from_nodes_or_object_info(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps({"nodes": ["KSampler", "PackNode"], "models": {"loras": ["a.safetensors"]}}))
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"object_info": {"KSampler": {}, "PackNode": {}}, "models": {"loras": []}}))
    assert covers(NEEDS, read_inventory(nodes, "ep"))
    assert missing(NEEDS, read_inventory(info, "ep")) == ["file loras/a.safetensors"]
    assert read_inventory(tmp_path / "absent.json", "ep") is None and read_inventory(None, "ep") is None


def _state(port: int, classes: set[str] | None, reachable: bool = True) -> InstanceState:
    instance = ComfyInstance(f"http://127.0.0.1:{port}", frozenset({"text"}))
    info = None if classes is None else {c: {} for c in classes}
    models = {"loras": frozenset({"a.safetensors"})}
    return InstanceState(instance, reachable, models=models if reachable else {}, object_info=info)


def test_cannot_run_names_what_each_server_lacks() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    snapshot = Snapshot((_state(1, {"KSampler"}), _state(2, {"PackNode"})), 0.0)
    notice = cannot_run_notice(snapshot, settings, NEEDS)
    assert notice is not None and notice.code == "cannot_run"
    assert notice.missing == ["class PackNode on 127.0.0.1:1", "class KSampler on 127.0.0.1:2"]
    assert notice.servers == ["127.0.0.1:1", "127.0.0.1:2"]


def test_no_cannot_run_while_one_server_covers_it_or_cannot_be_judged() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    covering = Snapshot((_state(1, {"KSampler"}), _state(2, {"KSampler", "PackNode"})), 0.0)
    assert cannot_run_notice(covering, settings, NEEDS) is None
    down = Snapshot((_state(1, {"KSampler"}), _state(2, None, reachable=False)), 0.0)
    assert cannot_run_notice(down, settings, NEEDS) is None


def test_the_endpoint_without_an_inventory_cannot_run_a_template() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        comfy_ui_address="",
        sagemaker_endpoint_name="render-ep",
        sagemaker_bucket="b",
    )
    notice = cannot_run_notice(Snapshot((), 0.0), settings, NEEDS)
    assert notice is not None and notice.servers == ["render-ep"]
