"""Can this ComfyUI instance run this graph? Judged from the API's snapshot of it (`instances`): every node
class in its `/object_info`, every literal valid for that class's spec, every link of a compatible type,
every model file the graph loads present in its `/models/{folder}` listing.

Each finding names the node, its class, the input and the instance, so a lead can fix the graph or the
server (`contract.templates.validate` against the instance's `/object_info`, then the model listings).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from backend.instances import InstanceState
from backend.template_schemas import InstanceVerdict, Problem
from contract import templates as contract

Graph = Mapping[str, Any]
ModelFiles = Mapping[str, Sequence[str]]  # folder -> file names the graph loads


def model_inputs(graph: Graph, models: ModelFiles) -> Iterator[tuple[str, str, str, str, str]]:
    """(node id, class, input, folder, file) of every literal naming a model file the graph needs."""
    wanted = {name: folder for folder, names in models.items() for name in names}
    for node_id, node in graph.items():
        for name, value in (node.get("inputs") or {}).items():
            if isinstance(value, str) and value in wanted:
                yield node_id, node.get("class_type", ""), name, wanted[value], value


def unplaced_files(graph: Graph, models: ModelFiles) -> list[tuple[str, str]]:
    """(folder, file) the needs name that no literal of the graph does (a style's LoRAs, a model input's
    choices): checked without a node to name."""
    literal = {f for _, _, _, _, f in model_inputs(graph, models)}
    return [(folder, f) for folder, names in models.items() for f in names if f not in literal]


def _problem(
    code: str, message: str, node_id: str, class_type: str, name: str | None, instance: str
) -> Problem:
    return Problem(
        code=code,
        message=message,
        field=f"graph.{node_id}.inputs.{name}" if name else f"graph.{node_id}.class_type",
        node_id=node_id,
        class_type=class_type,
        input=name,
        instance=instance,
    )


def as_problem(found: contract.Problem) -> Problem:
    return Problem(**found.to_json())


def judge_instance(
    state: InstanceState, declaration: contract.Declaration, models: ModelFiles, style_ids: list[str]
) -> tuple[InstanceVerdict, list[Problem]]:
    """Whether `state` covers the declaration, and every reason it does not (as problems naming it)."""
    where = state.name
    if not state.reachable:
        reason = f"The instance {where} is not answering ({state.error or 'unreachable'})."
        return InstanceVerdict(instance=where, covers=False, reasons=[reason]), []
    info = state.object_info
    if info is None:
        reason = f"The node classes of {where} are unknown: its /object_info could not be read."
        return InstanceVerdict(instance=where, covers=False, reasons=[reason]), []
    problems: list[Problem] = []
    for found in contract.validate(declaration, info, style_ids=style_ids, instance=where):
        problems.append(as_problem(found))
    reported = {(p.node_id, p.input) for p in problems}
    for node_id, class_type, name, folder, file in model_inputs(declaration.graph, models):
        if (node_id, name) in reported:
            continue
        listed = state.models.get(folder)
        if listed is None:
            message = f"node {node_id} ({class_type}), input {name}: {where} could not list models/{folder}"
            problems.append(_problem("models_unlisted", message, node_id, class_type, name, where))
        elif file not in listed:
            message = f"node {node_id} ({class_type}), input {name}: {folder}/{file} is missing on {where}"
            problems.append(_problem("model_missing", message, node_id, class_type, name, where))
    for folder, file in unplaced_files(declaration.graph, models):
        if file not in state.models.get(folder, frozenset()):
            message = f"{folder}/{file} (which an input may choose) is missing on {where}"
            problems.append(Problem(code="model_missing", message=message, instance=where))
    verdict = InstanceVerdict(instance=where, covers=not problems, reasons=[p.message for p in problems])
    return verdict, problems
