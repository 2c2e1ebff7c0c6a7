"""/healthz (the process is alive), /readyz (database, storage, models verified, each ComfyUI reachable
with the files it needs), /metrics (Prometheus).

/readyz answers 503 `not_ready` when something every render needs is missing: the database, storage,
verified models, a ComfyUI instance, or a checkpoint/ControlNet an instance's job kinds load. A style
LoRA missing on an instance only takes that style away (`/api/styles` says so, and a job in it is
refused), so it answers 200 `degraded` with the missing files: the load balancer checks `/healthz`, and
an operator or a deploy script reading /readyz sees what to sync.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.api.deps import AvailabilityDep, EngineDep, SessionMakerDep, SettingsDep, StorageDep
from backend.metrics import render_metrics
from backend.storage import StorageError

router = APIRouter(tags=["health"])


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


def _check_models(marker: Path | None) -> dict[str, Any]:
    """Model sync writes a marker once every model is verified (deployments set MODELS_MARKER)."""
    if marker is None:
        return {"ok": True, "checked": False}
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {"ok": False, "error": "models not verified yet"}
    return {"ok": bool(data.get("ok", True)), "verified_at": data.get("verified_at")}


def _status(checks: dict[str, Any]) -> tuple[str, int]:
    comfy = checks["comfyui"].values()
    if not all(checks[name]["ok"] for name in ("database", "storage", "models")):
        return "not_ready", 503
    if not all(c["ok"] for c in comfy):
        return "not_ready", 503
    if any(c.get("missing") for c in comfy):
        return "degraded", 200
    return "ready", 200


@router.get(
    "/readyz",
    summary="Ready to serve: database, storage and every ComfyUI server reachable with its models",
    responses={503: {"description": "not_ready: something every render needs is missing"}},
)
async def readyz(
    settings: SettingsDep, engine: EngineDep, storage: StorageDep, availability: AvailabilityDep
) -> JSONResponse:
    db, comfy = await asyncio.gather(_check_db(engine), availability.report())
    try:
        await storage.check()
        stored: dict[str, Any] = {"ok": True}
    except StorageError as exc:
        stored = {"ok": False, "error": str(exc)}
    checks = {
        "database": db,
        "storage": stored,
        "models": await asyncio.to_thread(_check_models, settings.models_marker),
        "comfyui": comfy,
    }
    status, code = _status(checks)
    return JSONResponse({"status": status, "checks": checks}, code)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(sessionmaker: SessionMakerDep) -> Response:
    body = await render_metrics(sessionmaker)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
