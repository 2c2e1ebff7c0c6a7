"""/healthz (the process is alive), /readyz (database, storage, models verified, each ComfyUI reachable),
/metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.api.deps import EngineDep, HttpClientDep, SessionMakerDep, SettingsDep, StorageDep
from backend.metrics import render_metrics
from backend.storage import StorageError

router = APIRouter(tags=["health"])
COMFY_PROBE_TIMEOUT_S = 2.0


@router.get("/healthz", summary="The API process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check_db(engine: AsyncEngine) -> dict[str, Any]:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


async def _check_comfy(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        r = await client.get(f"{url}/system_stats", timeout=COMFY_PROBE_TIMEOUT_S)
        r.raise_for_status()
        version = r.json().get("system", {}).get("comfyui_version")
        return {"ok": True, "version": version}
    except (httpx.HTTPError, ValueError) as exc:
        return {"ok": False, "error": type(exc).__name__}


def _check_models(marker: Path | None) -> dict[str, Any]:
    """Model sync writes a marker once every model is verified (deployments set MODELS_MARKER)."""
    if marker is None:
        return {"ok": True, "checked": False}
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {"ok": False, "error": "models not verified yet"}
    return {"ok": bool(data.get("ok", True)), "verified_at": data.get("verified_at")}


@router.get("/readyz", summary="Ready to serve: database, storage and every ComfyUI server reachable")
async def readyz(
    settings: SettingsDep, engine: EngineDep, client: HttpClientDep, storage: StorageDep
) -> JSONResponse:
    instances = settings.comfy_instances
    db, *comfy = await asyncio.gather(_check_db(engine), *(_check_comfy(client, i.url) for i in instances))
    try:
        await storage.check()
        stored: dict[str, Any] = {"ok": True}
    except StorageError as exc:
        stored = {"ok": False, "error": str(exc)}
    checks = {
        "database": db,
        "storage": stored,
        "models": await asyncio.to_thread(_check_models, settings.models_marker),
        "comfyui": {i.name: c for i, c in zip(instances, comfy, strict=True)},
    }
    ok = db["ok"] and stored["ok"] and checks["models"]["ok"] and all(c["ok"] for c in comfy)
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, 200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(sessionmaker: SessionMakerDep) -> Response:
    body = await render_metrics(sessionmaker)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
