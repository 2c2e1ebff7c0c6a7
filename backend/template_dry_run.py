"""The dry run of a template: its graph queued on a sandbox emulator (TEMPLATE_DRY_RUN_ADDRESS) that was
loaded with the instances' recorded `/object_info` (`POST /emulator/object_info`), so the sandbox judges
and runs the graph with the node classes the real servers have, without a GPU.

A placeholder image is uploaded for each image input; `POST /prompt` answering 400, or 200 with non-empty
`node_errors` (ComfyUI 0.3.64 queues the outputs that validate and lists the others' errors), is a
failure naming each refused node, its class and input; then the history must say success and every result
node must have produced an image (the report lists them: GET /view on the sandbox shows them).

Not run, with a warning and no problem: an empty address (`dry_run_skipped`), and a sandbox that does not
answer or refuses its admin routes (`dry_run_unavailable`: it is the studio's to fix, not the lead's, so
publishing goes on with the instance checks alone, and the report says so).
"""

from __future__ import annotations

import asyncio
import copy
import io
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image, ImageDraw

from backend.template_schemas import DryRun, Problem

DRY_RUN_TIMEOUT_S = 30.0
POLL_S = 0.05
PLACEHOLDER_SIDE_PX = 512
SUBFOLDER = "dry-run"


@dataclass
class Outcome:
    """The dry run's verdict, what blocks publishing (problems) and what is only worth reading."""

    dry_run: DryRun
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


class Unavailable(Exception):
    """The sandbox could not be used (not the graph's fault)."""


def _placeholder_png() -> bytes:
    img = Image.new("RGB", (PLACEHOLDER_SIDE_PX, PLACEHOLDER_SIDE_PX), "white")
    ImageDraw.Draw(img).rectangle([64, 64, 448, 448], outline="black", width=4)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _url(address: str) -> str:
    return address.rstrip("/") if address.startswith(("http://", "https://")) else f"http://{address}"


def _merged(object_infos: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for doc in object_infos:
        merged.update(doc)
    return merged


def _problems(graph: Mapping[str, Any], node_errors: Mapping[str, Any], address: str) -> list[Problem]:
    found = []
    for node_id, entry in node_errors.items():
        class_type = entry.get("class_type") or graph.get(node_id, {}).get("class_type")
        for err in entry.get("errors") or [{}]:
            name = (err.get("extra_info") or {}).get("input_name")
            detail = err.get("details") or err.get("message") or "refused"
            where = f"input {name}" if name else "the node"
            found.append(
                Problem(
                    code="dry_run_failed",
                    message=f"The dry run refused node {node_id} ({class_type}), {where}: {detail}.",
                    field=f"graph.{node_id}.inputs.{name}" if name else f"graph.{node_id}",
                    node_id=str(node_id),
                    class_type=class_type,
                    input=name,
                    instance=address,
                )
            )
    return found


def _failed(message: str, address: str) -> Outcome:
    dry = DryRun(status="failed", message=message)
    return Outcome(dry, [Problem(code="dry_run_failed", message=message, instance=address)])


def _unavailable(address: str, why: str) -> Outcome:
    message = (
        f"The sandbox at {address} {why}: no dry run was made, "
        "so only the instance checks vouch for this template."
    )
    warning = Problem(code="dry_run_unavailable", message=message, instance=address)
    return Outcome(DryRun(status="skipped", message=message), warnings=[warning])


async def _admin(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """A sandbox route that is no judgement of the graph: any failure makes the sandbox unavailable."""
    r = await client.request(method, url, **kwargs)
    if r.is_error:
        path = httpx.URL(url).path
        raise Unavailable(f"answered HTTP {r.status_code} to {method} {path}")
    return r


async def _upload(client: httpx.AsyncClient, base: str) -> str:
    files = {"image": (f"placeholder-{uuid.uuid4().hex[:8]}.png", _placeholder_png(), "image/png")}
    r = await _admin(client, "POST", f"{base}/upload/image", files=files, data={"subfolder": SUBFOLDER})
    body = r.json()
    return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else str(body["name"])


async def _history(client: httpx.AsyncClient, base: str, prompt_id: str) -> dict[str, Any] | None:
    deadline = time.monotonic() + DRY_RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        r = await _admin(client, "GET", f"{base}/history/{prompt_id}")
        entry: dict[str, Any] | None = r.json().get(prompt_id)
        if entry is not None:
            return entry
        await asyncio.sleep(POLL_S)
    return None


def _judge_history(
    graph: Mapping[str, Any], entry: Mapping[str, Any], results: Sequence[str], address: str
) -> Outcome:
    status = entry.get("status") or {}
    if status.get("status_str") != "success":
        messages = [m for m in status.get("messages", []) if m and m[0] == "execution_error"]
        info = messages[0][1] if messages else {}
        node = info.get("node_id")
        text = info.get("exception_message") or "the render failed"
        where = f" at node {node} ({info.get('node_type')})" if node else ""
        return _failed(f"The dry run on {address} failed{where}: {text}".strip(), address)
    outputs = entry.get("outputs") or {}
    images: dict[str, list[dict[str, str]]] = {}
    for node_id in results:
        saved = (outputs.get(node_id) or {}).get("images")
        if not saved:
            class_type = graph.get(node_id, {}).get("class_type")
            return _failed(
                f"On the dry run on {address}, result node {node_id} ({class_type}) saved no image.", address
            )
        images[node_id] = [
            {k: str(image.get(k, "")) for k in ("filename", "subfolder", "type")} for image in saved
        ]
    return Outcome(DryRun(status="passed", message=f"rendered on the sandbox {address}", images=images))


async def dry_run(
    client: httpx.AsyncClient,
    address: str,
    graph: Mapping[str, Any],
    object_infos: Sequence[Mapping[str, Any]],
    image_targets: Sequence[tuple[str, str]],
    results: Sequence[str],
) -> Outcome:
    """Queue `graph` (its image inputs pointed at a placeholder) on the sandbox: the verdict, problems and
    warnings."""
    if not address:
        message = "TEMPLATE_DRY_RUN_ADDRESS is not set: no dry run"
        warning = Problem(code="dry_run_skipped", message=message)
        return Outcome(DryRun(status="skipped", message=message), warnings=[warning])
    base = _url(address)
    prompt = copy.deepcopy(dict(graph))
    prompt_id = str(uuid.uuid4())
    for node in prompt.values():
        if node.get("class_type") == "SaveImage":
            node.setdefault("inputs", {})["filename_prefix"] = f"dry-run/{prompt_id}"
    try:
        if object_infos:
            await _admin(client, "POST", f"{base}/emulator/object_info", json=_merged(object_infos))
        if image_targets:
            path = await _upload(client, base)
            for node_id, name in image_targets:
                if node_id in prompt:
                    prompt[node_id].setdefault("inputs", {})[name] = path
        r = await client.post(f"{base}/prompt", json={"prompt": prompt, "prompt_id": prompt_id})
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        node_errors = body.get("node_errors") or {}
        if r.status_code >= 400 or node_errors:
            error = (body.get("error") or {}).get("message") or f"HTTP {r.status_code}"
            dry = DryRun(
                status="failed", message=f"The sandbox refused the graph: {error}", node_errors=node_errors
            )
            return Outcome(
                dry,
                _problems(prompt, node_errors, address)
                or [Problem(code="dry_run_failed", message=dry.message, instance=address)],
            )
        entry = await _history(client, base, prompt_id)
    except Unavailable as exc:
        return _unavailable(address, str(exc))
    except (httpx.HTTPError, ValueError) as exc:  # no answer, or not JSON
        return _unavailable(address, f"did not answer ({type(exc).__name__})")
    if entry is None:
        return _failed(f"The dry run on {address} did not end within {DRY_RUN_TIMEOUT_S:.0f} s.", address)
    return _judge_history(prompt, entry, results, address)
