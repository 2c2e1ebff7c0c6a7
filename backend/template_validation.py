"""The validation report of a template declaration (DESIGN §4): what a lead reads before publishing.

1. The declaration itself (`contract.templates.parse_declaration`: field paths) and its graph's shape
   (`check_graph` without instances: links, cycles, an output node, size limits). Either failing ends
   the report there.
2. Its needs (node classes, model files by folder) and lane; every model file must be in the model
   manifest (`model_manifest`: base, style and added models, read per validation).
3. Per instance, from the API's snapshot (`template_instances`): the graph and the declared inputs against
   its `/object_info`, its model files against its listings: which instances cover it and why the others
   do not. None covering is an error naming each missing class or file and its instance.
4. The dry run on the sandbox emulator (`template_dry_run`), when TEMPLATE_DRY_RUN_ADDRESS is set: its
   refusal is a problem; a sandbox that does not answer is a warning (`dry_run_unavailable`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from backend.instances import InstanceState, Snapshot
from backend.model_manifest import ModelManifest
from backend.template_dry_run import dry_run
from backend.template_instances import as_problem, judge_instance, model_inputs, unplaced_files
from backend.template_schemas import DryRun, Problem, Report
from contract import templates as contract
from contract.styles import Manifest
from contract.template_graph import is_ui_format


@dataclass(frozen=True)
class Validated:
    """A declaration that parsed (else None), with its report (publishable when `report.ok`)."""

    declaration: contract.Declaration | None
    report: Report
    effective: Mapping[str, Any] | None = None  # input key -> constraints on a covering instance
    not_api_format: bool = False  # its graph is a UI workflow: no report but "export the API format"

    @property
    def readable(self) -> bool:
        """Whether there is a report to read: a declaration that parsed, its graph in the API format."""
        return self.declaration is not None and not self.not_api_format

    def spec(self) -> dict[str, Any]:
        """What the version stores: graph, inputs, outputs, and the inputs' effective constraints."""
        assert self.declaration is not None
        return {**self.declaration.spec(), "effective_constraints": dict(self.effective or {})}


def _failed(problems: Sequence[Problem]) -> Report:
    return Report(ok=False, problems=list(problems), dry_run=DryRun(status="skipped", message="not reached"))


def _folder_of(states: Sequence[InstanceState]) -> contract.FolderOf:
    """A model file's folder, from the instances' listings (for loaders no table knows)."""

    def folder_of(name: str) -> str | None:
        for state in states:
            for folder, files in state.models.items():
                if name in files:
                    return folder
        return None

    return folder_of


def _merged_object_info(states: Sequence[InstanceState]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for state in states:
        merged.update(state.object_info or {})
    return merged


def _manifest_problems(
    graph: Mapping[str, Any], models: Mapping[str, Sequence[str]], manifest: ModelManifest
) -> list[Problem]:
    found = []
    for node_id, class_type, name, folder, file in model_inputs(graph, models):
        if not manifest.has(folder, file):
            message = (
                f"node {node_id} ({class_type}), input {name}: {folder}/{file} is not in the model manifest "
                "(add it, with its sha256, first)"
            )
            found.append(
                Problem(
                    code="model_not_in_manifest",
                    message=message,
                    field=f"graph.{node_id}.inputs.{name}",
                    node_id=node_id,
                    class_type=class_type,
                    input=name,
                )
            )
    for folder, file in unplaced_files(graph, models):
        if not manifest.has(folder, file):
            message = f"{folder}/{file} (which an input may choose) is not in the model manifest"
            found.append(Problem(code="model_not_in_manifest", message=message))
    return found


def _image_targets(declaration: contract.Declaration) -> list[tuple[str, str]]:
    return [
        (node, name) for item in declaration.inputs if item.kind == "image" for node, name in item.targets
    ]


def _unplaced(needs: contract.Needs) -> list[Problem]:
    return [
        Problem(
            code="model_folder_unknown",
            message=f"{name} looks like a model file, but no instance lists it in any models folder",
        )
        for name in needs.unplaced
    ]


async def validate(
    doc: Any,
    snapshot: Snapshot,
    models: ModelManifest,
    styles: Manifest,
    client: httpx.AsyncClient,
    dry_run_address: str,
) -> Validated:
    """The report of `doc` (a declaration as JSON) against the instances in `snapshot`, now."""
    if is_ui_format(doc):  # a UI workflow uploaded as it is, no declaration around it
        ui_format = Problem(code="ui_format", message=contract.UI_FORMAT_HELP, field="")
        return Validated(None, _failed([ui_format]))
    try:
        declaration = contract.parse_declaration(doc)
    except contract.DeclarationError as exc:
        errors = exc.errors or [{"field": "", "message": str(exc)}]
        return Validated(None, _failed([Problem(code="invalid_declaration", **e) for e in errors]))
    structural = [as_problem(p) for p in contract.check_graph(declaration.graph)]
    if any(p.code == "ui_format" for p in structural):  # nothing else of it can be judged
        return Validated(declaration, _failed(structural), not_api_format=True)
    structural += [as_problem(p) for p in contract.check_inputs(declaration, None, styles.ids)]
    if structural:
        return Validated(declaration, _failed(structural))
    states = list(snapshot.states)
    needs = contract.declaration_needs(
        declaration, _merged_object_info(states), _folder_of(states), style_loras=styles.lora_files
    )
    files = {folder: list(names) for folder, names in needs.models.items()}
    problems = _manifest_problems(declaration.graph, files, models) + _unplaced(needs)
    verdicts, reasons, covering = [], [], []
    for state in states:
        verdict, found = judge_instance(state, declaration, files, list(styles.ids))
        verdicts.append(verdict)
        reasons += found or [
            Problem(code="instance_unusable", message=m, instance=state.name) for m in verdict.reasons
        ]
        if verdict.covers:
            covering.append(state)
    warnings: list[Problem] = []
    if covering:
        warnings += reasons
    else:
        where = ", ".join(s.name for s in states) or "none is configured"
        message = f"no ComfyUI instance can run this template (instances: {where})"
        problems += [Problem(code="no_instance_covers", message=message), *reasons]
    report = Report(
        ok=False,
        problems=problems,
        warnings=warnings,
        instances=verdicts,
        needs=needs.to_json(),
        lane=contract.lane_of(needs),
    )
    info = covering[0].object_info if covering else None
    effective = contract.effective_constraints(declaration, info, styles.ids) if covering else None
    if problems:
        report.dry_run = DryRun(status="skipped", message="not run: fix the problems first")
        return Validated(declaration, report, effective)
    infos = [s.object_info for s in covering if s.object_info is not None]
    results = list(declaration.outputs.results)
    outcome = await dry_run(
        client, dry_run_address, declaration.graph, infos, _image_targets(declaration), results
    )
    report.dry_run = outcome.dry_run
    report.problems += outcome.problems
    report.warnings += outcome.warnings
    report.ok = not report.problems
    return Validated(declaration, report, effective)
