"""What the API process knows of each ComfyUI server: reachable or not, and which model files it lists.

One `InstanceMonitor` per API process probes every instance (`/system_stats`, then `/models/<folder>` for
the folders a render loads from) and keeps the result for COMFY_MODELS_TTL_S. Requests read that snapshot:
only the first one waits for a probe; a stale snapshot is still answered while a refresh runs behind it,
so the request path never waits on a slow or unreachable server. `/readyz` asks for a fresh look.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from backend.config import ComfyInstance

PROBE_TIMEOUT_S = 2.0
MODEL_FOLDERS = ("checkpoints", "controlnet", "loras")


def public_name(instance: ComfyInstance) -> str:
    """`host:port` of the instance: what a designer or an operator may read (no credentials, no path)."""
    url = httpx.URL(instance.url)
    return f"{url.host}:{url.port}" if url.port else url.host


@dataclass(frozen=True)
class InstanceState:
    """One look at one instance. `models` maps a folder to its files; a folder missing from it could not
    be listed (unknown, not empty)."""

    instance: ComfyInstance
    reachable: bool
    error: str | None = None
    version: str | None = None
    models: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return public_name(self.instance)


async def _get_json(client: httpx.AsyncClient, url: str) -> Any:
    r = await client.get(url, timeout=PROBE_TIMEOUT_S)
    r.raise_for_status()
    return r.json()


async def _list_folder(client: httpx.AsyncClient, base: str, folder: str) -> frozenset[str] | None:
    """The folder's files as ComfyUI's `GET /models/{folder}` lists them; None when it cannot say."""
    try:
        names = await _get_json(client, f"{base}/models/{folder}")
    except (httpx.HTTPError, ValueError):
        return None
    return frozenset(str(n) for n in names) if isinstance(names, list) else None


async def probe(client: httpx.AsyncClient, instance: ComfyInstance) -> InstanceState:
    try:
        stats = await _get_json(client, f"{instance.url}/system_stats")
    except (httpx.HTTPError, ValueError) as exc:
        return InstanceState(instance, reachable=False, error=type(exc).__name__)
    version = stats.get("system", {}).get("comfyui_version") if isinstance(stats, dict) else None
    listings = await asyncio.gather(*(_list_folder(client, instance.url, f) for f in MODEL_FOLDERS))
    models = {f: names for f, names in zip(MODEL_FOLDERS, listings, strict=True) if names is not None}
    return InstanceState(instance, reachable=True, version=version, models=models)


@dataclass(frozen=True)
class Snapshot:
    states: tuple[InstanceState, ...]
    taken_at: float

    def serving(self, kind: str) -> list[InstanceState]:
        return [s for s in self.states if kind in s.instance.serves]


class InstanceMonitor:
    """The cached snapshot of every instance, refreshed by one probe round at a time."""

    def __init__(self, instances: Sequence[ComfyInstance], client: httpx.AsyncClient, ttl_s: float) -> None:
        self.instances = list(instances)
        self.client = client
        self.ttl_s = ttl_s
        self._snapshot: Snapshot | None = None if self.instances else Snapshot((), time.monotonic())
        self._task: asyncio.Task[Snapshot] | None = None

    async def _probe_all(self) -> Snapshot:
        states = await asyncio.gather(*(probe(self.client, i) for i in self.instances))
        self._snapshot = Snapshot(tuple(states), time.monotonic())
        return self._snapshot

    def _refreshing(self) -> asyncio.Task[Snapshot]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._probe_all(), name="comfyui probe")
        return self._task

    def _is_stale(self, snapshot: Snapshot) -> bool:
        return bool(self.instances) and time.monotonic() - snapshot.taken_at > self.ttl_s

    async def fresh(self) -> Snapshot:
        """A look taken now (or by the round already under way)."""
        return await asyncio.shield(self._refreshing())

    async def current(self) -> Snapshot:
        """The cached snapshot (the first call waits for it); a stale one starts a refresh behind it."""
        snapshot = self._snapshot
        if snapshot is None:
            return await self.fresh()
        if self._is_stale(snapshot):
            self._refreshing()
        return snapshot

    def cached(self) -> Snapshot | None:
        """What is known now, without waiting; None before the first probe round has ended."""
        snapshot = self._snapshot
        if snapshot is None or self._is_stale(snapshot):
            self._refreshing()
        return snapshot

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
