"""The two clients a benchmark compares: a designer's client of the API (uploads, POST, event stream or
polling, image) and a minimal ComfyUI client (POST /prompt, /ws, /history, /view) sending the graph the
dispatcher would send."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from backend.config import Settings
from backend.schemas import MAX_SEED, JobCreate
from contract.graphs import SAVE, GraphInputs, build_graph
from contract.styles import Manifest, load_manifest

PROMPT = "sunlit living room, rattan chairs, teak floor, large windows"
FINAL = frozenset({"succeeded", "failed", "cancelled"})
HTTP_TIMEOUT = httpx.Timeout(120.0, connect=5.0)


def job_body(style: str = "none", steps: int = 10, side: int = 512, **extra: Any) -> dict[str, Any]:
    """A text render; the 512x512 the emulator's step time is quoted for."""
    return {"prompt": PROMPT, "style": style, "steps": steps, "width": side, "height": side, **extra}


@dataclass(frozen=True)
class Timing:
    first_progress_s: float  # POST → first progress event the client sees
    total_s: float  # POST → image bytes in hand
    prompt_id: str  # the ComfyUI prompt (for a job: its id)
    marks: dict[str, float] = field(default_factory=dict)  # wall-clock times (epoch s) of each step


class GraphMaker:
    """The graph the dispatcher builds for a job body (same workflow, manifest and model names)."""

    def __init__(self) -> None:
        self.settings = Settings(_env_file=None)  # type: ignore[call-arg]
        self.manifest: Manifest = load_manifest(self.settings.style_manifest)

    def graph(self, body: dict[str, Any], prompt_id: str) -> dict[str, Any]:
        params = JobCreate(**body).model_dump()
        seed = secrets.randbelow(MAX_SEED + 1)
        inputs = GraphInputs("text", {**params, "seed": seed}, seed, prompt_id)
        return build_graph(
            inputs,
            self.manifest,
            self.settings.workflows_dir,
            checkpoint=self.settings.checkpoint_name,
            controlnet=self.settings.controlnet_name,
        )


def api_client(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT)


async def post_job(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    r = await client.post("/api/jobs", json=body)
    r.raise_for_status()
    return str(r.json()["id"])


async def follow(
    client: httpx.AsyncClient, job_id: str, marks: dict[str, float] | None = None
) -> dict[str, Any]:
    """Read the job's Server-Sent Events to the final one, and return it. `marks` gets, for each event
    type, when it was stored (`event:<type>`) and when this client saw it first (`seen:<type>`)."""
    marks = {} if marks is None else marks
    async with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
        stream.raise_for_status()
        async for line in stream.aiter_lines():
            if not line.startswith("data: "):
                continue
            message: dict[str, Any] = json.loads(line[6:])
            kind = message["type"]
            marks.setdefault(f"seen:{kind}", time.time())
            if "created_at" in message:
                marks.setdefault(f"event:{kind}", datetime.fromisoformat(message["created_at"]).timestamp())
            if kind in FINAL:
                return message
    raise RuntimeError(f"the event stream of job {job_id} ended without a final event")


async def upload(client: httpx.AsyncClient, data: bytes, role: str) -> str:
    """A picture uploaded as a designer's client uploads it (`POST /api/uploads` with its role): its id."""
    r = await client.post(
        "/api/uploads", files={"file": (f"{role}.png", data, "image/png")}, data={"role": role}
    )
    if r.status_code != 201:
        raise RuntimeError(f"upload {role}: {r.status_code} {r.text[:300]}")
    return str(r.json()["id"])


async def template_job(
    client: httpx.AsyncClient, template: str, inputs: dict[str, Any], poll_s: float = 0.02
) -> tuple[dict[str, Any], float]:
    """A template job POSTed and its record polled (`GET /api/jobs/{id}` every `poll_s`) until it is final:
    the record (images and passes included) and the seconds from the POST to the client seeing it final."""
    start = time.perf_counter()
    r = await client.post("/api/jobs", json={"template": template, "inputs": inputs})
    if r.status_code != 201:
        raise RuntimeError(f"POST /api/jobs: {r.status_code} {r.text[:300]}")
    job_id = str(r.json()["id"])
    while True:
        job: dict[str, Any] = (await client.get(f"/api/jobs/{job_id}")).json()
        if job["status"] in FINAL:
            return job, time.perf_counter() - start
        await asyncio.sleep(poll_s)


async def api_render(client: httpx.AsyncClient, body: dict[str, Any], *, progress: bool = True) -> Timing:
    """One job as a designer's client sees it: POST, follow the event stream, fetch the image.

    `progress=False` for a path whose events are coarse (SageMaker: submitted, running, done); its
    first progress is then the final event."""
    t0, marks = time.perf_counter(), {"post": time.time()}
    job_id = await post_job(client, body)
    final = await follow(client, job_id, marks)
    if final["type"] != "succeeded":
        raise RuntimeError(f"job {job_id} ended {final['type']}: {final['data']}")
    r = await client.get(f"/api/images/{final['data']['images'][0]['id']}")
    r.raise_for_status()
    marks["done"] = time.time()
    if "seen:progress" not in marks:
        if progress:
            raise RuntimeError(f"job {job_id} succeeded without a progress event")
        marks["seen:progress"] = marks["seen:succeeded"]
    return Timing(marks["seen:progress"] - marks["post"], time.perf_counter() - t0, job_id, marks)


class DirectComfy:
    """The least a client can do with ComfyUI: one socket, then /prompt, wait, /history, /view."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client_id = uuid.uuid4().hex
        self.http = httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT)
        self.ws: ClientConnection | None = None

    async def __aenter__(self) -> DirectComfy:
        ws_url = self.url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        self.ws = await connect(ws_url, max_size=2**24)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.http.aclose()

    async def submit(self, graph: dict[str, Any], prompt_id: str) -> None:
        body = {"prompt": graph, "client_id": self.client_id, "prompt_id": prompt_id}
        r = await self.http.post("/prompt", json=body)
        r.raise_for_status()

    async def render(self, graph: dict[str, Any], prompt_id: str) -> Timing:
        assert self.ws is not None
        t0, marks = time.perf_counter(), {"post": time.time()}
        await self.submit(graph, prompt_id)
        while True:
            frame = await self.ws.recv()
            if isinstance(frame, bytes):
                continue
            message = json.loads(frame)
            data = message.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if message["type"] == "progress":
                marks.setdefault("seen:progress", time.time())
            if message["type"] == "executing" and data.get("node") is None:
                marks["seen:end"] = time.time()
                break
        entry = (await self.http.get(f"/history/{prompt_id}")).json()[prompt_id]
        image = entry["outputs"][SAVE]["images"][0]
        r = await self.http.get("/view", params=image)
        r.raise_for_status()
        marks["done"] = time.time()
        if "seen:progress" not in marks:
            raise RuntimeError(f"prompt {prompt_id} finished without a progress message")
        return Timing(marks["seen:progress"] - marks["post"], time.perf_counter() - t0, prompt_id, marks)
