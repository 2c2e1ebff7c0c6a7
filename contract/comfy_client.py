"""A client for one ComfyUI server (0.3.64): /prompt, /queue, /history, /view, /upload/image, /interrupt, /ws.

`events()` reads /ws with live previews: it announces `supports_preview_metadata` in its first message
(ComfyUI then sends each sampler step's image as binary event 4, with the prompt and node in its JSON
metadata) and still reads event 1 (image type, image: no metadata) from servers or paths that send it.

Errors it raises:

    ComfyError
    ├── ComfyUnreachable        connection refused, timeout, 5xx: the server may come back; retry
    ├── ComfyRejected           400 from POST /prompt (or node_errors on a 200): the graph is wrong; fail
    └── ComfyExecutionFailed    an execution_error in history: fail (retry once for out-of-memory)
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import connect

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
WS_PING_INTERVAL_S = 10.0
WS_PING_TIMEOUT_S = 20.0
PREVIEW_IMAGE = 1  # binary event: 4-byte BE image type (1 JPEG, 2 PNG), then the image
PREVIEW_IMAGE_WITH_METADATA = 4  # binary event: 4-byte BE length, that much JSON metadata, then the image
IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}
FEATURE_FLAGS = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}


class ComfyError(Exception):
    """ComfyUI could not do what was asked."""


class ComfyUnreachable(ComfyError):
    """ComfyUI did not answer, or answered with a server error."""


class ComfyRejected(ComfyError):
    """ComfyUI refused the graph at validation."""

    def __init__(self, message: str, body: dict[str, Any]) -> None:
        super().__init__(message)
        self.body = body


class ComfyExecutionFailed(ComfyError):
    """A node raised while ComfyUI ran the prompt."""

    def __init__(self, node_type: str, node_id: str, exception_type: str, message: str) -> None:
        self.node_type = node_type
        self.node_id = node_id
        self.exception_type = exception_type
        self.exception_message = message.strip()
        super().__init__(f"{node_type} (node {node_id}) failed: {exception_type}: {self.exception_message}")

    @property
    def is_oom(self) -> bool:
        return "OutOfMemoryError" in self.exception_type or "out of memory" in self.exception_message.lower()


@dataclass(frozen=True)
class QueueState:
    running: frozenset[str]
    pending: frozenset[str]

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running or prompt_id in self.pending


@dataclass(frozen=True)
class Preview:
    """A sampler's live preview from a binary /ws frame; `prompt_id` and `node_id` only with metadata."""

    image: bytes
    mime: str
    prompt_id: str | None = None
    node_id: str | None = None


def parse_preview(frame: bytes) -> Preview | None:
    """Event 1 or 4 as ComfyUI 0.3.64's server.py writes them; None for any other binary frame."""
    if len(frame) < 8:
        return None
    event, word = struct.unpack(">II", frame[:8])
    if event == PREVIEW_IMAGE:
        return Preview(frame[8:], IMAGE_TYPES.get(word, "image/jpeg"))
    if event != PREVIEW_IMAGE_WITH_METADATA or len(frame) < 8 + word:
        return None
    try:
        meta = json.loads(frame[8 : 8 + word])
    except ValueError:
        return None
    if not isinstance(meta, dict):
        return None
    prompt_id, node_id = meta.get("prompt_id"), meta.get("node_id")
    return Preview(
        frame[8 + word :],
        str(meta.get("image_type") or "image/jpeg"),
        None if prompt_id is None else str(prompt_id),
        None if node_id is None else str(node_id),
    )


def describe_rejection(body: dict[str, Any]) -> str:
    """A readable sentence from ComfyUI's 400 body (prompt error + every node error)."""
    error = body.get("error") or {}
    parts: list[str] = []
    for node_id, entry in sorted((body.get("node_errors") or {}).items()):
        for err in entry.get("errors", []):
            detail = f": {err['details']}" if err.get("details") else ""
            parts.append(f"{entry.get('class_type', '?')} (node {node_id}): {err.get('message', '')}{detail}")
    head = error.get("message") if isinstance(error, dict) else str(error)
    if not parts and isinstance(error, dict) and error.get("details"):
        parts.append(str(error["details"]))
    return f"ComfyUI rejected the graph: {head or 'invalid prompt'}" + (
        f" — {'; '.join(parts)}" if parts else ""
    )


def execution_failure(entry: dict[str, Any]) -> ComfyExecutionFailed | None:
    for event, data in entry.get("status", {}).get("messages", []):
        if event == "execution_error":
            return ComfyExecutionFailed(
                str(data.get("node_type", "?")),
                str(data.get("node_id", "?")),
                str(data.get("exception_type", "Exception")),
                str(data.get("exception_message", "")),
            )
    return None


def was_interrupted(entry: dict[str, Any]) -> bool:
    return any(event == "execution_interrupted" for event, _ in entry.get("status", {}).get("messages", []))


class ComfyClient:
    def __init__(self, base_url: str, client_id: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    @property
    def ws_url(self) -> str:
        scheme = "wss" if self.base_url.startswith("https") else "ws"
        return f"{scheme}://{self.base_url.split('://', 1)[1]}/ws?clientId={self.client_id}"

    async def close(self) -> None:
        await self.http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ComfyUnreachable(f"{self.base_url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise ComfyUnreachable(f"{self.base_url}{path}: HTTP {response.status_code}")
        return response

    async def system_stats(self) -> dict[str, Any]:
        r = await self._request("GET", "/system_stats")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    async def submit(
        self, graph: dict[str, Any], prompt_id: str, extra_data: dict[str, Any] | None = None
    ) -> int:
        """Queue the graph under our prompt id; returns ComfyUI's queue number."""
        body = {"prompt": graph, "client_id": self.client_id, "prompt_id": prompt_id}
        if extra_data:
            body["extra_data"] = extra_data
        r = await self._request("POST", "/prompt", json=body)
        try:
            data = r.json()
        except ValueError as exc:
            raise ComfyUnreachable(f"POST /prompt answered {r.status_code} without JSON") from exc
        if r.status_code == 400:
            raise ComfyRejected(describe_rejection(data), data)
        r.raise_for_status()
        if data.get("node_errors"):
            # Some outputs were dropped: our graphs have one output, so this is a rejection in disguise.
            raise ComfyRejected(describe_rejection({"error": {}, **data}), data)
        return int(data.get("number", 0))

    async def queue(self) -> QueueState:
        r = await self._request("GET", "/queue")
        data = r.json()
        return QueueState(
            running=frozenset(str(item[1]) for item in data.get("queue_running", [])),
            pending=frozenset(str(item[1]) for item in data.get("queue_pending", [])),
        )

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished prompt's history entry, or None (unknown, pending, running, or lost in a restart)."""
        r = await self._request("GET", f"/history/{prompt_id}")
        entry: dict[str, Any] | None = r.json().get(prompt_id)
        return entry

    async def view(self, filename: str, subfolder: str, type_: str = "output") -> bytes:
        r = await self._request(
            "GET", "/view", params={"filename": filename, "subfolder": subfolder, "type": type_}
        )
        if r.status_code != 200:
            raise ComfyUnreachable(f"/view {subfolder}/{filename}: HTTP {r.status_code}")
        return r.content

    async def upload_image(self, data: bytes, name: str, subfolder: str) -> str:
        """Upload to the input folder; returns the path LoadImage takes (`subfolder/name`)."""
        files = {"image": (name, data, "image/png")}
        r = await self._request(
            "POST",
            "/upload/image",
            files=files,
            data={"subfolder": subfolder, "type": "input", "overwrite": "true"},
        )
        if r.status_code != 200:
            raise ComfyUnreachable(f"/upload/image: HTTP {r.status_code}")
        body = r.json()
        return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else str(body["name"])

    async def interrupt(self, prompt_id: str | None = None) -> None:
        await self._request("POST", "/interrupt", json={"prompt_id": prompt_id} if prompt_id else {})

    async def delete_pending(self, prompt_ids: list[str]) -> None:
        await self._request("POST", "/queue", json={"delete": prompt_ids})

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """The /ws JSON messages until the socket closes (binary preview frames are skipped)."""
        async for message in self.events(previews=False):
            if isinstance(message, dict):
                yield message

    async def events(self, previews: bool = True) -> AsyncIterator[dict[str, Any] | Preview]:
        """The /ws JSON messages and, with `previews`, the live previews, until the socket closes."""
        try:
            async with connect(
                self.ws_url,
                open_timeout=CONNECT_TIMEOUT_S,
                ping_interval=WS_PING_INTERVAL_S,
                ping_timeout=WS_PING_TIMEOUT_S,
                max_size=2**24,
            ) as ws:
                if previews:
                    await ws.send(json.dumps(FEATURE_FLAGS))  # only a first message counts
                async for frame in ws:
                    if isinstance(frame, str):
                        try:
                            yield json.loads(frame)
                        except ValueError:
                            logger.warning("ignoring a non-JSON frame from %s", self.base_url)
                    elif previews and (preview := parse_preview(frame)) is not None:
                        yield preview
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            raise ComfyUnreachable(f"{self.ws_url}: {type(exc).__name__}: {exc}") from exc
