"""What the ComfyUI servers can render right now, judged from the API's snapshot of them (`instances`).

A render of one kind loads the checkpoint (a sketch also the ControlNet) and its style's LoRA on an
instance that serves that kind. A style is unavailable for a kind only when every instance serving the
kind was looked at and each lacks a file the render needs: an unreachable instance is unknown, never a
reason to refuse a job (the queued job's notice says that its server is down instead). With
DISPATCH_ROUTING=sagemaker_only no ComfyUI renders anything, so nothing is judged.

A custom template's queued job is judged by its lane's needs (`backend.lanes`): when every server that
could run it was looked at and each lacks a node class or a model file, its notice is `cannot_run`,
naming what is missing where (the dispatchers never claim it meanwhile).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from backend.config import Settings
from backend.errors import Conflict
from backend.instances import InstanceMonitor, InstanceState, Snapshot
from backend.lanes import BUILTIN_LANES, Inventory, LaneNeedsCache, Needs, missing, read_inventory
from backend.schemas import JobOut, Notice, StyleAvailability
from contract.styles import Manifest, Style

KINDS = ("text", "sketch")
File = tuple[str, str]  # (models folder, file name)


def server_label(state: InstanceState) -> str:
    kinds = state.instance.serves
    role = next(iter(kinds)) if len(kinds) == 1 else "ComfyUI"
    return f"the {role} server {state.name}"


def base_files(settings: Settings, kind: str) -> list[File]:
    """What every render of `kind` loads, whatever its style."""
    files = [("checkpoints", settings.checkpoint_name)]
    if kind == "sketch":
        files.append(("controlnet", settings.controlnet_name))
    return files


def needed_files(settings: Settings, kind: str, style: Style) -> list[File]:
    lora = [("loras", style.lora_file)] if style.has_lora else []
    return base_files(settings, kind) + lora


def lacking(state: InstanceState, files: Sequence[File]) -> list[str] | None:
    """The files the instance lacks; None when that cannot be known (unreachable, a folder not listed)."""
    if not state.reachable or any(folder not in state.models for folder, _ in files):
        return None
    return [name for folder, name in files if name not in state.models[folder]]


def _missing_sentence(state: InstanceState, names: Sequence[str]) -> str:
    verb = "is" if len(names) == 1 else "are"
    return f"{' and '.join(names)} {verb} missing on {server_label(state)}"


def judge(snapshot: Snapshot, settings: Settings, kind: str, style: Style) -> StyleAvailability:
    """Whether a job of `kind` in `style` can render on some instance; if not, the files and servers."""
    if settings.dispatch_routing == "sagemaker_only":
        return StyleAvailability()
    files = needed_files(settings, kind, style)
    gaps = [(state, lacking(state, files)) for state in snapshot.serving(kind)]
    if not gaps or any(not names for _, names in gaps):
        return StyleAvailability()
    found = [(state, names) for state, names in gaps if names]
    is_lora = style.has_lora and all(style.lora_file in names for _, names in found)
    sentences = "; ".join(_missing_sentence(state, names) for state, names in found)
    return StyleAvailability(
        available=False,
        code="style_unavailable" if is_lora else "models_missing",
        reason=f"{style.display_name} cannot render {kind} jobs now: {sentences}.",
        missing=sorted({n for _, names in found for n in names}),
        servers=[state.name for state, _ in found],
    )


def waiting_notice(snapshot: Snapshot | None, kind: str) -> Notice | None:
    """Why a queued job of `kind` waits, when every instance that could run it is down."""
    serving = snapshot.serving(kind) if snapshot is not None else []
    if not serving or any(state.reachable for state in serving):
        return None
    names = [state.name for state in serving]
    subject = (
        f"The {kind} server ({names[0]}) is"
        if len(names) == 1
        else (f"The {kind} servers ({', '.join(names)}) are")
    )
    return Notice(
        code="server_down",
        message=f"{subject} not answering; your render will start when it is back.",
        servers=names,
    )


def _inventories(snapshot: Snapshot | None, settings: Settings) -> list[Inventory | None]:
    """Every server that could run a template job (None: the SageMaker endpoint without an inventory)."""
    found: list[Inventory | None] = []
    if settings.dispatch_routing != "sagemaker_only" and snapshot is not None:
        found += [Inventory.of_state(state) for state in snapshot.states]
    if settings.dispatch_routing != "comfy_only" and settings.sagemaker_endpoint_name:
        found.append(read_inventory(settings.sagemaker_inventory, settings.sagemaker_endpoint_name))
    return found


def cannot_run_notice(snapshot: Snapshot | None, settings: Settings, needs: Needs) -> Notice | None:
    """`cannot_run` when every server was looked at and none has all the job's needs; None while one
    covers them or one cannot be judged (unreachable, a folder not listed)."""
    inventories = _inventories(snapshot, settings)
    gaps: list[tuple[str, list[str]]] = []
    for inventory in inventories:
        if inventory is None:
            gaps.append((settings.sagemaker_endpoint_name, ["its recorded inventory (SAGEMAKER_INVENTORY)"]))
            continue
        lacks = missing(needs, inventory)
        if not lacks:  # covers it ([]) or cannot be judged (None)
            return None
        gaps.append((inventory.name, lacks))
    if not gaps:
        return None
    sentences = "; ".join(f"{', '.join(lacks)} missing on {name}" for name, lacks in gaps)
    return Notice(
        code="cannot_run",
        message=f"No server can run this template now: {sentences}.",
        servers=[name for name, _ in gaps],
        missing=[f"{item} on {name}" for name, lacks in gaps for item in lacks],
    )


def instance_report(state: InstanceState, settings: Settings, manifest: Manifest) -> dict[str, Any]:
    """`/readyz` for one instance: reachable, and the manifest's files it lacks, per models folder.

    `ok` is false when it is down or lacks a base model one of its kinds needs; a missing LoRA only
    takes its styles away (reported, the instance stays ok)."""
    if not state.reachable:
        return {"ok": False, "error": state.error}
    base = sorted({f for kind in state.instance.serves for f in base_files(settings, kind)})
    loras = [("loras", name) for name in manifest.lora_files]
    missing: dict[str, list[str]] = {}
    for folder, name in base + loras:
        if folder in state.models and name not in state.models[folder]:
            missing.setdefault(folder, []).append(name)
    unlisted = sorted({folder for folder, _ in base + loras} - set(state.models))
    base_missing = any(name in missing.get(folder, ()) for folder, name in base)
    report: dict[str, Any] = {"ok": not base_missing, "version": state.version, "missing": missing}
    if unlisted:
        report["unlisted"] = unlisted
    return report


@dataclass(frozen=True)
class Availability:
    """The request's view of the servers: what styles can render, why a job waits, readiness."""

    monitor: InstanceMonitor
    settings: Settings
    manifest: Manifest
    lanes: LaneNeedsCache | None = None

    async def styles(self) -> dict[str, dict[str, StyleAvailability]]:
        """style id -> kind -> its availability."""
        snapshot = await self.monitor.current()
        return {
            sid: {kind: judge(snapshot, self.settings, kind, style) for kind in KINDS}
            for sid, style in self.manifest.styles.items()
        }

    async def require(self, kind: str, style_id: str) -> None:
        """409 for a job that could only fail: no server has what its render loads."""
        snapshot = await self.monitor.current()
        verdict = judge(snapshot, self.settings, kind, self.manifest.get(style_id))
        if not verdict.available:
            raise Conflict(
                verdict.reason,
                code=verdict.code,
                details=[{"field": "style", "message": verdict.reason, "missing": verdict.missing}],
            )

    def notice(self, kind: str) -> Notice | None:
        return waiting_notice(self.monitor.cached(), kind)

    async def lane_notice(self, lane: str) -> Notice | None:
        """Why a queued job of `lane` waits: its servers are down (a built-in), or none can run it."""
        if lane in BUILTIN_LANES or self.lanes is None:
            return self.notice(lane)
        needs = await self.lanes.get(lane)
        return None if needs is None else cannot_run_notice(self.monitor.cached(), self.settings, needs)

    def annotate(self, job: JobOut) -> JobOut:
        """The job with its waiting notice, if it is queued behind a server that is down or that no
        server can run (a template lane's needs known here; an unknown one is read for the next look)."""
        if job.status != "queued":
            return job
        lane = job.lane or job.kind
        if lane in BUILTIN_LANES or self.lanes is None:
            job.notice = self.notice(job.kind)
            return job
        needs = self.lanes.cached(lane)
        job.notice = None if needs is None else cannot_run_notice(self.monitor.cached(), self.settings, needs)
        return job

    async def report(self) -> dict[str, dict[str, Any]]:
        """`/readyz`'s view of each instance (by host:port, no credentials), from a fresh look."""
        snapshot = await self.monitor.fresh()
        return {s.name: instance_report(s, self.settings, self.manifest) for s in snapshot.states}
