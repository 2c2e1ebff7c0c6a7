"""Lanes: which queued jobs each executor may claim, and why none may.

A job is claimed by its lane (`Job.lane`). The built-in templates' lanes are their names (`text`,
`sketch`), served by the executors configured for them (COMFY_UI_ADDRESS; the SageMaker endpoint serves
both). A custom template version's lane (`n:` + a hash of its needs) is served by every executor whose
inventory covers its needs: every node class (`/object_info`) and every model file (`/models/{folder}`).

`DispatchLanes` is the dispatcher's view: for the lanes of queued jobs (their needs read from
`template_versions`), which ones each executor covers, refreshed every LANES_REFRESH_S and as soon as a job
of a lane it has not judged is queued. A ComfyUI executor's inventory is probed from its instance
(`/object_info` cached by ComfyUI version, as the API's `InstanceMonitor` does); the SageMaker
endpoint's is the file SAGEMAKER_INVENTORY names, recorded when its container was built (see README).
The API judges the same way from its own snapshot (`availability.cannot_run_notice`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.config import ComfyInstance, Settings
from backend.db import SessionMaker, read_session
from backend.instances import InstanceState, ObjectInfoCache, probe
from backend.models import Job, JobKind, JobStatus, TemplateVersion

logger = logging.getLogger(__name__)

LANES_REFRESH_S = 30.0  # how often the dispatcher judges again which lanes its executors cover
BUILTIN_LANES = frozenset(k.value for k in JobKind)


@dataclass(frozen=True)
class Needs:
    """What a template version's graph needs of a server: node classes and model files per folder."""

    nodes: frozenset[str] = frozenset()
    models: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, doc: Mapping[str, Any] | None) -> Needs:
        """`template_versions.needs`: `{"nodes": [class...], "models": {folder: [file...]}}`."""
        doc = doc or {}
        models = doc.get("models") or {}
        return cls(
            frozenset(str(n) for n in doc.get("nodes") or ()),
            {str(f): frozenset(str(n) for n in names) for f, names in models.items() if names},
        )


@dataclass(frozen=True)
class Inventory:
    """What one server has: node classes (None: unknown) and model files per folder (a folder missing
    from `models`: unknown, not empty). `name` is what a designer may read (host:port, an endpoint)."""

    name: str
    nodes: frozenset[str] | None
    models: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of_state(cls, state: InstanceState) -> Inventory:
        if not state.reachable:
            return cls(state.name, None)
        return cls(state.name, state.node_classes, state.models)


def missing(needs: Needs, inventory: Inventory) -> list[str] | None:
    """What the server lacks of `needs` (`class X`, `file folder/name`): [] when it covers them, None when
    that cannot be known (its classes unknown, or a folder not listed)."""
    if inventory.nodes is None or any(f not in inventory.models for f in needs.models):
        return None
    gaps = [f"class {name}" for name in sorted(needs.nodes - inventory.nodes)]
    for folder, names in sorted(needs.models.items()):
        gaps += [f"file {folder}/{name}" for name in sorted(names - inventory.models[folder])]
    return gaps


def covers(needs: Needs, inventory: Inventory | None) -> bool:
    return inventory is not None and missing(needs, inventory) == []


def read_inventory(path: Path | None, name: str) -> Inventory | None:
    """A recorded inventory (SAGEMAKER_INVENTORY): `{"nodes": [...] or "object_info": {...}, "models":
    {folder: [file...]}}`; None when no file is named or it cannot be read (nothing is covered then)."""
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        nodes = doc.get("nodes") if "nodes" in doc else list(doc.get("object_info") or {})
        models = {str(f): frozenset(str(n) for n in names) for f, names in (doc.get("models") or {}).items()}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        logger.warning("inventory %s unreadable: %s", path, exc)
        return None
    return Inventory(name, frozenset(str(n) for n in nodes or ()), models)


async def queued_lane_needs(session: AsyncSession) -> dict[str, Needs]:
    """The needs of every template lane that has queued jobs (a built-in's lane is configured, not judged)."""
    queued = select(Job.lane).where(Job.status == JobStatus.queued).distinct()
    rows = await session.execute(
        select(TemplateVersion.lane, TemplateVersion.needs).where(TemplateVersion.lane.in_(queued))
    )
    return {str(lane): Needs.of(needs) for lane, needs in rows.all() if lane not in BUILTIN_LANES}


async def lane_needs(session: AsyncSession, lane: str) -> Needs | None:
    """One lane's needs (every version in a lane has the same); None for a built-in or unknown lane."""
    if lane in BUILTIN_LANES:
        return None
    doc = await session.scalar(select(TemplateVersion.needs).where(TemplateVersion.lane == lane).limit(1))
    return None if doc is None else Needs.of(doc)


class LaneExecutor(Protocol):
    name: str
    executor_type: str
    serves: frozenset[str]


class DispatchLanes:
    """The lanes each of a dispatcher's executors claims: its configured kinds, plus the queued template
    lanes its inventory covers."""

    def __init__(
        self, settings: Settings, sessionmaker: SessionMaker, executors: Sequence[LaneExecutor]
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.executors = executors
        self.covered: dict[int, frozenset[str]] = {}
        self.judged: frozenset[str] = frozenset()  # template lanes looked at by the last refresh
        self.refreshed_at: float | None = None
        self.object_infos = ObjectInfoCache()
        self._http: httpx.AsyncClient | None = None

    def of(self, ex: LaneExecutor) -> frozenset[str]:
        return ex.serves | self.covered.get(id(ex), frozenset())

    def all(self) -> list[str]:
        return sorted({lane for ex in self.executors for lane in self.of(ex)})

    def is_known(self, lane: str) -> bool:
        return lane in BUILTIN_LANES or lane in self.judged

    def is_due(self) -> bool:
        return self.refreshed_at is None or time.monotonic() - self.refreshed_at >= LANES_REFRESH_S

    async def refresh(self) -> None:
        """Judge every queued template lane against every executor's inventory now."""
        self.refreshed_at = time.monotonic()
        session = await read_session(self.sessionmaker)
        async with session:
            needs = await queued_lane_needs(session)
        if not needs:
            self.covered, self.judged = {}, frozenset()
            return
        inventories = await asyncio.gather(*(self.inventory(ex) for ex in self.executors))
        covered: dict[int, frozenset[str]] = {}
        for ex, inventory in zip(self.executors, inventories, strict=True):
            covered[id(ex)] = frozenset(lane for lane, n in needs.items() if covers(n, inventory))
        if covered != self.covered:
            shown = (f"{ex.name}: {', '.join(sorted(covered[id(ex)])) or '-'}" for ex in self.executors)
            logger.info("template lanes covered: %s", "; ".join(shown), extra={"action": "lanes_refreshed"})
        self.covered, self.judged = covered, frozenset(needs)

    async def inventory(self, ex: LaneExecutor) -> Inventory | None:
        """What the executor's server has now (None: unknown, so it takes no template lane)."""
        instance = getattr(ex, "instance", None)
        if isinstance(instance, ComfyInstance):
            if self._http is None:
                self._http = httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0))
            return Inventory.of_state(await probe(self._http, instance, self.object_infos))
        if ex.executor_type == "sagemaker":
            return await asyncio.to_thread(read_inventory, self.settings.sagemaker_inventory, ex.name)
        return None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()


class LaneNeedsCache:
    """The API process's needs per template lane, read once (a lane is named by its needs' hash, so what
    it needs never changes)."""

    def __init__(self, sessionmaker: SessionMaker) -> None:
        self.sessionmaker = sessionmaker
        self._needs: dict[str, Needs] = {}
        self._reads: dict[str, asyncio.Task[Needs | None]] = {}

    async def get(self, lane: str) -> Needs | None:
        if lane in BUILTIN_LANES:
            return None
        if lane not in self._needs:
            needs = await asyncio.shield(self._start(lane))
            if needs is not None:
                self._needs[lane] = needs
        return self._needs.get(lane)

    def cached(self, lane: str) -> Needs | None:
        """What is known now, without waiting (an unknown lane is read behind this answer)."""
        if lane in BUILTIN_LANES:
            return None
        if lane not in self._needs:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return None  # no loop to read it in (a caller outside the API's event loop)
            self._start(lane)
        return self._needs.get(lane)

    def _start(self, lane: str) -> asyncio.Task[Needs | None]:
        task = self._reads.get(lane)
        if task is None or task.done():
            task = self._reads[lane] = asyncio.create_task(self._read(lane), name=f"needs {lane}")
            task.add_done_callback(lambda t: self._keep(lane, t))
        return task

    def _keep(self, lane: str, task: asyncio.Task[Needs | None]) -> None:
        if not task.cancelled() and task.exception() is None and (needs := task.result()) is not None:
            self._needs[lane] = needs

    async def _read(self, lane: str) -> Needs | None:
        try:
            session = await read_session(self.sessionmaker)
            async with session:
                return await lane_needs(session, lane)
        except Exception as exc:  # the answer goes out without a notice; the next look reads again
            logger.warning("needs of lane %s unreadable: %s", lane, exc)
            return None
