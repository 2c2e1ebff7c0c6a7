"""The emulator's node set: the classes it implements (nodes.py) plus classes loaded from a recorded
`/object_info` (a real server's or a node pack's), which it serves as recorded and runs generically.

A recorded class the emulator implements keeps its own spec and behaviour, with one addition: its combos of
files (models, input images) offer the recorded server's files too, so a graph written for that server
validates here (the emulator's loaders read a file only when it is there). A class loaded twice takes the
later record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from contract.comfy_spec import declared_inputs, input_spec, is_output_node
from mlserver.emulator.nodes import CATALOGUE, Dynamic, NodeClass, object_info

Lister = Callable[[Dynamic], list[str]]
# Models folders a node pack registers in ComfyUI's folder_paths when it loads (so `GET /models` lists them).
PACK_FOLDERS = {"custom_nodes.ComfyUI_IPAdapter_plus": ("ipadapter",)}
ClassInfo = dict[str, Any]


class RecordError(ValueError):
    """A document that is not an `/object_info` answer."""


def check_record(doc: Any) -> dict[str, ClassInfo]:
    """The classes of an `/object_info` document, each with the keys validation and execution read."""
    if not isinstance(doc, Mapping) or not doc:
        raise RecordError("an /object_info document is a non-empty JSON object of classes")
    classes: dict[str, ClassInfo] = {}
    for name, info in doc.items():
        if not isinstance(info, Mapping):
            raise RecordError(f"{name}: a class entry is a JSON object")
        if not isinstance(info.get("input"), Mapping) or not isinstance(info.get("output"), list):
            raise RecordError(f"{name}: a class entry has an 'input' object and an 'output' list")
        try:
            declared_inputs(info)
        except ValueError as exc:
            raise RecordError(f"{name}: {exc}") from exc
        classes[str(name)] = dict(info)
    return classes


def read_record(path: Path) -> dict[str, ClassInfo]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecordError(f"{path}: {exc.strerror}") from exc
    try:
        return check_record(json.loads(text))
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path.name}: not JSON ({exc})") from exc
    except RecordError as exc:
        raise RecordError(f"{path.name}: {exc}") from exc


class NodeSet:
    def __init__(self) -> None:
        self.loaded: dict[str, ClassInfo] = {}
        self.recorded_files: dict[str, dict[str, list[Any]]] = {}  # class → input → recorded options

    def load(self, classes: Mapping[str, ClassInfo]) -> dict[str, list[str]]:
        """Merge recorded classes: which were added, which replaced an earlier record, and which the
        emulator implements itself (left as they are)."""
        report: dict[str, list[str]] = {"added": [], "updated": [], "implemented": []}
        for name, info in classes.items():
            if name in CATALOGUE:
                report["implemented"].append(name)
                self._record_files(CATALOGUE[name], info)
                continue
            report["updated" if name in self.loaded else "added"].append(name)
            self.loaded[name] = dict(info)
        return report

    def _record_files(self, node: NodeClass, info: ClassInfo) -> None:
        for name, spec in node.input_specs().items():
            dynamic = isinstance(spec[0], tuple) or (
                spec[0] == "COMBO" and isinstance(spec[1].get("options"), tuple)
            )
            recorded = input_spec(info, name) if dynamic else None
            if recorded is not None and recorded.choices:
                files = self.recorded_files.setdefault(node.name, {}).setdefault(name, [])
                files.extend(c for c in recorded.choices if c not in files)

    def _with_recorded_files(self, class_type: str, info: ClassInfo) -> ClassInfo:
        for name, files in self.recorded_files.get(class_type, {}).items():
            for section in info["input"].values():
                spec = section.get(name) if isinstance(section, dict) else None
                if spec is None:
                    continue
                own = spec[0] if isinstance(spec[0], list) else spec[1]["options"]
                own.extend(f for f in files if f not in own)
        return info

    def model_folders(self) -> list[str]:
        """The folders the loaded classes' packs register, as those packs do on a real server."""
        modules = {str(info.get("python_module", "")) for info in self.loaded.values()}
        return sorted({f for m in modules for f in PACK_FOLDERS.get(m, ())})

    def known(self, class_type: Any) -> bool:
        return isinstance(class_type, str) and (class_type in CATALOGUE or class_type in self.loaded)

    def is_loaded(self, class_type: str) -> bool:
        return class_type in self.loaded and class_type not in CATALOGUE

    def info(self, class_type: str, lister: Lister) -> ClassInfo | None:
        """The class's `/object_info` entry: the catalogue's with this server's folders, or the record."""
        if class_type in CATALOGUE:
            return self._with_recorded_files(class_type, object_info(CATALOGUE[class_type], lister))
        return self.loaded.get(class_type)

    def all_info(self, lister: Lister) -> dict[str, ClassInfo]:
        served = {
            name: self._with_recorded_files(name, object_info(node, lister))
            for name, node in CATALOGUE.items()
        }
        return {**served, **{k: v for k, v in self.loaded.items() if k not in served}}

    def declared(self, class_type: str) -> set[str]:
        """The names of a class's required and optional inputs (others are dropped at execution)."""
        if class_type in CATALOGUE:
            return set(CATALOGUE[class_type].input_specs())
        return set(declared_inputs(self.loaded[class_type]))

    def is_output(self, class_type: str) -> bool:
        if class_type in CATALOGUE:
            return CATALOGUE[class_type].output_node
        return is_output_node(self.loaded[class_type])
