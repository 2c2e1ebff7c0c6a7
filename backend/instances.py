"""What the API process knows of each ComfyUI server: reachable or not, and which model files it lists.

One `InstanceMonitor` per API process probes every instance (`/system_stats`, then `/models/<folder>` for
every folder `GET /models` names, and `/object_info`, fetched again only when the instance's ComfyUI version
changes) and keeps the result for COMFY_MODELS_TTL_S. Requests read that snapshot:
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
MODEL_FOLDERS = ("checkpoints", "controlnet", "loras")  # listed even where `GET /models` cannot answer
OBJECT_INFO_TIMEOUT_S = 20.0  # a real server's document is a few MB


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
    object_info: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def node_classes(self) -> frozenset[str] | None:
        """The node classes the instance can run; None when its `/object_info` could not be read."""
        return None if self.object_info is None else frozenset(self.object_info)

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


async def _folders(client: httpx.AsyncClient, base: str) -> list[str]:
    """Every models folder the server knows (`GET /models`), the render's own first."""
    try:
        names = await _get_json(client, f"{base}/models")
    except (httpx.HTTPError, ValueError):
        names = []
    extra = [str(n) for n in names if str(n) not in MODEL_FOLDERS] if isinstance(names, list) else []
    return [*MODEL_FOLDERS, *sorted(extra)]


class ObjectInfoCache:
    """`/object_info` per instance, kept while its ComfyUI version stays the same (node packs change only
    with a restart, which a deployment pairs with a version or a new probe after `forget`)."""

    def __init__(self) -> None:
        self._docs: dict[str, tuple[str | None, Mapping[str, Any]]] = {}

    async def get(
        self, client: httpx.AsyncClient, instance: ComfyInstance, version: str | None
    ) -> Mapping[str, Any] | None:
        cached = self._docs.get(instance.url)
        if cached is not None and cached[0] == version and version is not None:
            return cached[1]
        try:
            r = await client.get(f"{instance.url}/object_info", timeout=OBJECT_INFO_TIMEOUT_S)
            r.raise_for_status()
            doc = r.json()
        except (httpx.HTTPError, ValueError):
            return cached[1] if cached is not None else None
        if not isinstance(doc, dict):
            return None
        self._docs[instance.url] = (version, doc)
        return doc

    def forget(self, instance: ComfyInstance) -> None:
        self._docs.pop(instance.url, None)


async def probe(
    client: httpx.AsyncClient, instance: ComfyInstance, object_infos: ObjectInfoCache | None = None
) -> InstanceState:
    try:
        stats = await _get_json(client, f"{instance.url}/system_stats")
    except (httpx.HTTPError, ValueError) as exc:
        return InstanceState(instance, reachable=False, error=type(exc).__name__)
    version = stats.get("system", {}).get("comfyui_version") if isinstance(stats, dict) else None
    folders = await _folders(client, instance.url)
    listings = await asyncio.gather(*(_list_folder(client, instance.url, f) for f in folders))
    models = {f: names for f, names in zip(folders, listings, strict=True) if names is not None}
    info = await object_infos.get(client, instance, version) if object_infos is not None else None
    return InstanceState(instance, reachable=True, version=version, models=models, object_info=info)


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
        self.object_infos = ObjectInfoCache()

    async def _probe_all(self) -> Snapshot:
        states = await asyncio.gather(*(probe(self.client, i, self.object_infos) for i in self.instances))
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
