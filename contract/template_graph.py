"""Is a ComfyUI API-format graph well formed, and would an instance's `/object_info` accept it?

`check_graph(graph, object_info=None, instance=None)` returns `Problem`s (empty: fine). Without
`object_info` it checks the shape only: node ids, `class_type` + `inputs`, links `[node_id, slot]` to
existing nodes, no cycle, an output node, the size limits. With it, as ComfyUI 0.3.64's validation does
(through `contract.comfy_spec`): known classes, required inputs present, each link's slot within the
source's RETURN_TYPES and of a matching type, literals valid for their spec. Every walk is iterative: a
hostile 1000-node chain or a deep nesting cannot exhaust the stack.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from contract import comfy_spec
from contract.template_decl import MAX_GRAPH_BYTES, MAX_JSON_DEPTH, MAX_NODES, json_depth

Graph = dict[str, Any]
ObjectInfo = Mapping[str, Any]  # GET /object_info: class name -> its entry
OUTPUT_CLASSES = frozenset({"SaveImage", "PreviewImage"})
UI_FORMAT_HELP = (
    "this is a UI workflow (top-level 'nodes' and 'links', what ComfyUI's Save writes); upload the API "
    "format instead: in ComfyUI choose Workflow menu → Export (API) (older versions: enable 'Dev mode "
    "options' in the settings, then use 'Save (API Format)')"
)


@dataclass(frozen=True)
class Problem:
    """One validation failure. `message` names the node id, class and input it concerns."""

    code: str
    message: str
    node_id: str | None = None
    class_type: str | None = None
    input: str | None = None
    instance: str | None = None
    field: str | None = None  # the declaration's field path; derived from node/input when not given

    @property
    def path(self) -> str:
        if self.field is not None:
            return self.field
        parts = ["graph", self.node_id, "inputs" if self.input else None, self.input]
        return ".".join(p for p in parts if p) if self.node_id else ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "field": self.path}


def where(node_id: str, class_type: Any = None, input_name: str | None = None) -> str:
    """`node 3 (KSampler), input seed`: how every message starts."""
    text = f"node {node_id}"
    if class_type is not None:
        text += f" ({class_type})"
    if input_name is not None:
        text += f", input {input_name}"
    return text


class _Report:
    def __init__(self, instance: str | None) -> None:
        self.instance = instance
        self.problems: list[Problem] = []

    def add(
        self,
        code: str,
        what: str,
        node_id: str | None = None,
        class_type: Any = None,
        name: str | None = None,
    ) -> None:
        cls = class_type if isinstance(class_type, str) else None
        prefix = where(node_id, cls, name) + ": " if node_id is not None else ""
        suffix = f" (on {self.instance})" if self.instance else ""
        self.problems.append(Problem(code, prefix + what + suffix, node_id, cls, name, self.instance))


def is_link(value: Any) -> bool:
    return isinstance(value, list)


def links(graph: Graph) -> Iterator[tuple[str, str, list[Any]]]:
    """(node id, input name, link) for every list value of a well-formed node."""
    for node_id, node in graph.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if isinstance(inputs, Mapping):
            for name, value in inputs.items():
                if is_link(value):
                    yield node_id, name, value


def is_ui_format(graph: Any) -> bool:
    return isinstance(graph, Mapping) and isinstance(graph.get("nodes"), list) and "links" in graph


def check_graph(
    graph: Any,
    object_info: ObjectInfo | None = None,
    instance: str | None = None,
    *,
    filled: Iterable[tuple[str, str]] = (),
) -> list[Problem]:
    """Every problem of the graph; `filled` = (node, input) whose literal a job replaces (not judged)."""
    report = _Report(instance)
    if is_ui_format(graph):
        report.add("ui_format", UI_FORMAT_HELP)
        return report.problems
    if not _check_size(graph, report):
        return report.problems
    _check_shape(graph, report)
    if report.problems:
        return report.problems
    _check_links(graph, report)
    if not report.problems:
        _check_cycles(graph, report)
    if object_info is not None:
        _check_against(graph, object_info, report, set(filled))
    _check_output(graph, object_info, report)
    return report.problems


def _check_size(graph: Any, report: _Report) -> bool:
    if not isinstance(graph, Mapping) or not graph:
        report.add("graph_empty", "a graph is a non-empty JSON object of nodes by id")
        return False
    if len(graph) > MAX_NODES:
        report.add("too_many_nodes", f"a graph has at most {MAX_NODES} nodes (this one has {len(graph)})")
        return False
    if json_depth(graph) > MAX_JSON_DEPTH:
        report.add("too_deep", f"the graph's JSON is nested deeper than {MAX_JSON_DEPTH} levels")
        return False
    size = len(json.dumps(graph, ensure_ascii=False, default=str).encode())
    if size > MAX_GRAPH_BYTES:
        report.add(
            "graph_too_large", f"a graph is at most {MAX_GRAPH_BYTES} bytes of JSON (this one is {size})"
        )
        return False
    return True


def _check_shape(graph: Mapping[Any, Any], report: _Report) -> None:
    for node_id, node in graph.items():
        if not isinstance(node_id, str) or not node_id or len(node_id) > 64:
            report.add("bad_node_id", f"node id {node_id!r} must be a string of 1 to 64 characters")
            continue
        if not isinstance(node, Mapping):
            report.add("bad_node", "must be an object with class_type and inputs", node_id)
            continue
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            report.add("bad_node", "class_type must be a non-empty string", node_id)
            continue
        if not isinstance(node.get("inputs"), Mapping):
            report.add("bad_node", "inputs must be an object of input names", node_id, class_type)


def _check_links(graph: Graph, report: _Report) -> None:
    for node_id, name, link in links(graph):
        class_type = graph[node_id]["class_type"]
        if len(link) != 2 or not isinstance(link[0], str) or type(link[1]) is not int or link[1] < 0:
            what = f"a link is [node_id, output_index] (a string and a whole number), not {link!r}"
            report.add("bad_link", what, node_id, class_type, name)
        elif link[0] not in graph:
            report.add(
                "link_to_missing_node",
                f"links to node {link[0]}, which is not in the graph",
                node_id,
                class_type,
                name,
            )


def _check_cycles(graph: Graph, report: _Report) -> None:
    """Kahn's algorithm; whatever is left sits on or behind a cycle, which a backward walk finds."""
    sources: dict[str, set[str]] = {node_id: set() for node_id in graph}
    for node_id, _name, link in links(graph):
        sources[node_id].add(link[0])
    waiting = {node_id: len(srcs) for node_id, srcs in sources.items()}
    users: dict[str, list[str]] = {node_id: [] for node_id in graph}
    for node_id, srcs in sources.items():
        for src in srcs:
            users[src].append(node_id)
    ready = [node_id for node_id, n in waiting.items() if n == 0]
    while ready:
        for user in users[ready.pop()]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    left = {node_id for node_id, n in waiting.items() if n > 0}
    if not left:
        return
    node_id, path, seen = min(left, key=_order), [], set()
    while node_id not in seen:
        seen.add(node_id)
        path.append(node_id)
        node_id = min((s for s in sources[node_id] if s in left), key=_order)
    cycle = [node_id, *reversed(path[path.index(node_id) :])]  # walked against the links: turn it round
    what = "is on a cycle: " + " → ".join(cycle) + " (a graph must run in order, each node after its inputs)"
    report.add("cycle", what, node_id, graph[node_id]["class_type"])


def _order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


def _is_output_class(class_type: str, object_info: ObjectInfo | None) -> bool:
    if object_info is not None and class_type in object_info:
        return comfy_spec.is_output_node(object_info[class_type])
    return class_type in OUTPUT_CLASSES


def _check_output(graph: Graph, object_info: ObjectInfo | None, report: _Report) -> None:
    if not any(_is_output_class(node["class_type"], object_info) for node in graph.values()):
        what = "the graph has no output node (a SaveImage, PreviewImage or another class marked OUTPUT_NODE)"
        report.add("no_output_node", what)


def _check_against(
    graph: Graph, object_info: ObjectInfo, report: _Report, filled: set[tuple[str, str]]
) -> None:
    read: dict[str, dict[str, comfy_spec.InputSpec]] = {}  # each class's specs, read once
    for node_id, node in graph.items():
        class_type = node["class_type"]
        info = object_info.get(class_type)
        if info is None:
            report.add("unknown_class", f"class {class_type} is not installed", node_id, class_type)
            continue
        try:
            specs = read.get(class_type) or read.setdefault(class_type, comfy_spec.declared_inputs(info))
        except ValueError as exc:
            report.add("bad_spec", f"the instance's /object_info is unreadable: {exc}", node_id, class_type)
            continue
        custom = comfy_spec.VALIDATED_BY_NODE.get(class_type, frozenset())
        for name, spec in specs.items():
            if name not in node["inputs"]:
                if spec.category == "required":
                    report.add(
                        "required_input_missing", "required input is missing", node_id, class_type, name
                    )
                continue
            value = node["inputs"][name]
            if is_link(value):
                _check_link(graph, object_info, report, node_id, spec, value)
            elif (node_id, name) not in filled:
                _check_literal(report, node_id, class_type, spec, value, name in custom)


def _check_link(
    graph: Graph,
    object_info: ObjectInfo,
    report: _Report,
    node_id: str,
    spec: comfy_spec.InputSpec,
    link: list[Any],
) -> None:
    class_type = graph[node_id]["class_type"]
    if len(link) != 2 or link[0] not in graph or type(link[1]) is not int:
        return  # reported by _check_links
    source_class = graph[link[0]]["class_type"]
    source = object_info.get(source_class)
    if source is None:
        return  # reported as unknown_class
    types = comfy_spec.output_types(source)
    if link[1] >= len(types):
        what = (
            f"links to output {link[1]} of node {link[0]} ({source_class}), which has {len(types)} output(s)"
        )
        report.add("link_output_missing", what, node_id, class_type, spec.name)
        return
    received = types[link[1]]
    if not comfy_spec.types_match(received, spec.type):
        expected = "COMBO" if isinstance(spec.type, list) else spec.type
        what = f"expects {expected} but node {link[0]} ({source_class}) output {link[1]} gives {received}"
        report.add("return_type_mismatch", what, node_id, class_type, spec.name)


def _check_literal(
    report: _Report, node_id: str, class_type: str, spec: comfy_spec.InputSpec, value: Any, custom: bool
) -> None:
    if not spec.is_widget:
        what = f"expects a link from a {spec.type} output, not the value {_short(value)}"
        report.add("link_expected", what, node_id, class_type, spec.name)
        return
    if spec.type in ("INT", "FLOAT") and (isinstance(value, bool) or not isinstance(value, int | float)):
        what = f"expects a number ({spec.type}), not {_short(value)}"
        report.add("invalid_input_type", what, node_id, class_type, spec.name)
        return
    try:
        ok, _converted, errors = comfy_spec.validate_literal(spec, value, custom_validated=custom)
    except TypeError as exc:
        report.add(
            "invalid_input_type",
            f"value {_short(value)} cannot be compared: {exc}",
            node_id,
            class_type,
            spec.name,
        )
        return
    if not ok:
        error = errors[0]
        report.add(error["type"], _literal_message(error, spec, value), node_id, class_type, spec.name)


def _literal_message(error: Mapping[str, Any], spec: comfy_spec.InputSpec, value: Any) -> str:
    kind = error["type"]
    if kind == "value_not_in_list":
        choices = spec.choices or []
        listing = ", ".join(map(str, choices[:10])) + (
            f" … ({len(choices)} in all)" if len(choices) > 10 else ""
        )
        return (
            f"value {_short(value)} is not one of: {listing}"
            if choices
            else f"value {_short(value)}: no choices"
        )
    return f"{error['message']} (value {_short(value)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
