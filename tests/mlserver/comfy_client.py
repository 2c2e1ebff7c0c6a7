"""A minimal ComfyUI client for the conformance suite, written the way ComfyUI's own API tests are:
socket with clientId first, POST /prompt with client_id, wait for `executing` node null."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

WORKFLOWS = Path(__file__).resolve().parents[2] / "contract" / "workflows"


def graph(name: str = "txt2img", **changes: Any) -> dict[str, Any]:
    """Our workflow with a unique prompt text (so the cache never short-cuts a test) and small sizes."""
    g: dict[str, Any] = json.loads((WORKFLOWS / f"{name}.json").read_text())
    g["6"]["inputs"]["text"] = f"{g['6']['inputs']['text']} {uuid.uuid4().hex[:8]}"
    g["5"]["inputs"].update(width=256, height=256)
    g["3"]["inputs"]["steps"] = 3
    for path, value in changes.items():
        node, key = path.split(".")
        g[node]["inputs"][key] = value
    return copy.deepcopy(g)


class Comfy:
    """`submitted` hears of every prompt id this client queues (for cleanup); `frame_timeout_s` is the
    longest silence between two frames of a prompt (a model load on a CPU server is the longest)."""

    def __init__(
        self, url: str, submitted: Callable[[str], None] | None = None, frame_timeout_s: float = 60
    ) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)
        self.client_id = uuid.uuid4().hex
        self.submitted = submitted or (lambda prompt_id: None)
        self.frame_timeout_s = frame_timeout_s

    def ws(self, client_id: str | None = None) -> ClientConnection:
        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={client_id or self.client_id}"
        return connect(ws_url, open_timeout=10, max_size=2**24)

    def post(self, prompt: dict[str, Any], **extra: Any) -> httpx.Response:
        if "prompt_id" in extra:
            self.submitted(str(extra["prompt_id"]))
        r = self.http.post("/prompt", json={"prompt": prompt, "client_id": self.client_id, **extra})
        if r.status_code == 200:
            self.submitted(r.json()["prompt_id"])
        return r

    def collect(self, ws: ClientConnection, prompt_id: str) -> list[dict[str, Any]]:
        return collect(ws, prompt_id, self.frame_timeout_s)

    def run(self, prompt: dict[str, Any], **extra: Any) -> tuple[str, list[dict[str, Any]]]:
        """Submit and collect this prompt's messages until `executing` with node null."""
        with self.ws() as ws:
            first = json.loads(ws.recv(timeout=10))
            assert first["type"] == "status" and first["data"]["sid"] == self.client_id
            r = self.post(prompt, **extra)
            assert r.status_code == 200, r.text
            prompt_id = r.json()["prompt_id"]
            return prompt_id, self.collect(ws, prompt_id)

    def history(self, prompt_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get(f"/history/{prompt_id}").json()
        return data.get(prompt_id, {})


def collect(ws: ClientConnection, prompt_id: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        frame = ws.recv(timeout=timeout_s)
        if isinstance(frame, bytes):
            continue
        msg = json.loads(frame)
        if msg["type"] != "status" and msg["data"].get("prompt_id") not in (None, prompt_id):
            continue
        messages.append(msg)
        if (
            msg["type"] == "executing"
            and msg["data"]["node"] is None
            and msg["data"].get("prompt_id") == prompt_id
        ):
            return messages
