"""ComfyUI 0.3.64's HTTP routes and /ws, with the same status codes and JSON (reference §1, §2).

Every route is served as `/x` and `/api/x`. Emulator-only routes live under `/emulator/` (stats, faults).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import mimetypes
import os
import platform
import sys
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

from mlserver.emulator.executor import Emulator, Item
from mlserver.emulator.folders import FOLDER_KEYS
from mlserver.emulator.nodes import Dynamic, vae_names
from mlserver.emulator.registry import RecordError, check_record
from mlserver.emulator.validation import prompt_error, validate_prompt

routes = web.RouteTableDef()
EMULATOR = web.AppKey("emulator", Emulator)
VERSION = "0.3.64"
FORCED_OCTET = {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript", "text/css"}


def emu(request: web.Request) -> Emulator:
    return request.app[EMULATOR]


def lister(e: Emulator) -> Any:
    def _list(dynamic: Dynamic) -> list[str]:
        if dynamic[0] == "models":
            return e.folders.list_models(dynamic[1])
        if dynamic[0] == "vae_names":
            return vae_names(e.folders.list_models("vae"), e.folders.list_models("vae_approx"))
        return e.folders.input_images()

    return _list


async def _json(request: web.Request) -> Any:
    return json.loads(await request.text())  # not JSON → exception → aiohttp's 500, as ComfyUI


@routes.post("/prompt")
async def post_prompt(request: web.Request) -> web.Response:
    e = emu(request)
    body = await _json(request)
    if "number" in body:
        number: float = float(body["number"])
    else:
        number = e.next_number()
        if body.get("front"):
            number = -number
    if "prompt" not in body:
        err = prompt_error("no_prompt", "No prompt provided", "No prompt provided")
        return web.json_response({"error": err, "node_errors": {}}, status=400)
    if e.faults.http_500_rate and e.rng.random() < e.faults.http_500_rate:
        raise web.HTTPInternalServerError()
    prompt = body["prompt"]
    if prompt and not isinstance(prompt, dict):
        raise web.HTTPInternalServerError()
    ok, error, outputs, node_errors = validate_prompt(
        prompt,
        body.get("partial_execution_targets"),
        lambda class_type: e.nodes.info(class_type, lister(e)),
        e.folders.input_exists,
    )
    if not ok:
        return web.json_response({"error": error, "node_errors": node_errors}, status=400)
    extra = dict(body.get("extra_data") or {})
    if "client_id" in body:
        extra["client_id"] = body["client_id"]
    prompt_id = str(body["prompt_id"]) if "prompt_id" in body else str(uuid.uuid4())
    await e.enqueue(Item(number, prompt_id, prompt, extra, outputs))
    return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})


@routes.get("/prompt")
async def get_prompt(request: web.Request) -> web.Response:
    return web.json_response({"exec_info": {"queue_remaining": emu(request).queue_remaining()}})


@routes.get("/queue")
async def get_queue(request: web.Request) -> web.Response:
    e = emu(request)
    running = [e.running.as_list()] if e.running else []
    return web.json_response({"queue_running": running, "queue_pending": [i.as_list() for i in e.queue]})


@routes.post("/queue")
async def post_queue(request: web.Request) -> web.Response:
    e = emu(request)
    body = await _json(request)
    changed = False
    if body.get("clear"):
        changed, e.queue = bool(e.queue), []
    if "delete" in body:
        before = len(e.queue)
        e.queue = [i for i in e.queue if i.prompt_id not in set(body["delete"])]
        changed = changed or len(e.queue) != before
    if changed:
        import heapq

        heapq.heapify(e.queue)
        await e.send_status()
    return web.Response()


@routes.post("/interrupt")
async def post_interrupt(request: web.Request) -> web.Response:
    e = emu(request)
    try:
        body = await _json(request)
    except ValueError:
        body = {}
    target = body.get("prompt_id") if isinstance(body, dict) else None
    if e.running is not None and (target is None or target == e.running.prompt_id):
        e.interrupt_flag = True
    return web.Response()


@routes.get("/history")
async def get_history(request: web.Request) -> web.Response:
    e = emu(request)
    items = list(e.history.items())
    max_items = request.query.get("max_items")
    offset = int(request.query.get("offset", -1))
    if max_items is not None:
        n = int(max_items)
        start = offset if offset >= 0 else max(0, len(items) - n)
        items = items[start : start + n]
    elif offset >= 0:
        items = items[offset:]
    return web.json_response(dict(items))


@routes.get("/history/{prompt_id}")
async def get_history_item(request: web.Request) -> web.Response:
    e = emu(request)
    pid = request.match_info["prompt_id"]
    return web.json_response({pid: e.history[pid]} if pid in e.history else {})


@routes.post("/history")
async def post_history(request: web.Request) -> web.Response:
    e = emu(request)
    body = await _json(request)
    if body.get("clear"):
        e.history.clear()
    for pid in body.get("delete", []):
        e.history.pop(pid, None)
    return web.Response()


@routes.post("/upload/image")
async def upload_image(request: web.Request) -> web.Response:
    e = emu(request)
    post = await request.post()
    image = post.get("image")
    if image is None:
        return web.Response(status=400)
    if not isinstance(image, web.FileField):
        raise web.HTTPInternalServerError()
    type_ = str(post.get("type", "input"))
    base = e.folders.type_dir(type_)
    if base is None:
        raise web.HTTPInternalServerError()
    subfolder = str(post.get("subfolder", ""))
    overwrite = str(post.get("overwrite", "")).lower() in ("true", "1")
    folder = (base / subfolder).resolve()
    filename = image.filename
    path = (folder / filename).resolve()
    if os.path.commonpath([str(base), str(path)]) != str(base):
        return web.Response(status=400)
    data = image.file.read()
    folder.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        path = _free_name(path, data)
    if not path.exists() or overwrite:
        await asyncio.to_thread(path.write_bytes, data)
    return web.json_response({"name": path.name, "subfolder": subfolder, "type": type_})


def _free_name(path: Path, data: bytes) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    n, candidate = 0, path
    while candidate.exists():
        if hashlib.sha256(candidate.read_bytes()).hexdigest() == digest:
            return candidate
        n += 1
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
    return candidate


@routes.get("/view")
async def view(request: web.Request) -> web.StreamResponse:
    e = emu(request)
    if "filename" not in request.query:
        raise web.HTTPNotFound()
    filename = request.query["filename"]
    type_ = request.query.get("type", "output")
    for suffix in ("output", "input", "temp"):
        if filename.endswith(f" [{suffix}]"):
            filename, type_ = filename[: -len(suffix) - 3], suffix
    if not filename or filename.startswith("/") or ".." in filename:
        return web.Response(status=400)
    base = e.folders.type_dir(type_)
    if base is None:
        return web.Response(status=400)
    folder = base
    if request.query.get("subfolder"):
        folder = Path(os.path.normpath(os.path.join(base, request.query["subfolder"])))  # noqa: ASYNC240 (pure string ops)
        if os.path.commonpath([str(folder), str(base)]) != str(base):
            return web.Response(status=403)
    path = folder / os.path.basename(filename)
    if not path.is_file():
        raise web.HTTPNotFound()
    if e.faults.view_fail_next > 0:
        e.faults.view_fail_next -= 1
        raise web.HTTPInternalServerError()
    headers = {"Content-Disposition": f'filename="{path.name}"'}
    if "preview" in request.query or request.query.get("channel", "rgba") != "rgba":
        return await _converted(request, path, headers)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if content_type in FORCED_OCTET:
        content_type = "application/octet-stream"
    headers["Content-Type"] = content_type
    return web.FileResponse(path, headers=headers)


async def _converted(request: web.Request, path: Path, headers: dict[str, str]) -> web.Response:
    channel = request.query.get("channel", "rgba")
    preview = request.query.get("preview")

    def convert() -> tuple[bytes, str]:
        with Image.open(path) as img:
            out = io.BytesIO()
            if preview is not None:
                fmt, *rest = preview.split(";")
                quality = int(rest[-1]) if rest and rest[-1].isdigit() else 90
                fmt = fmt if fmt in ("webp", "jpeg") and "a" not in channel else "webp"
                img.convert("RGB").save(out, fmt.upper(), quality=quality)
                return out.getvalue(), f"image/{fmt}"
            if channel == "rgb":
                img.convert("RGB").save(out, "PNG")
            else:
                alpha = img.getchannel("A") if "A" in img.getbands() else Image.new("L", img.size, 255)
                Image.merge("RGBA", (alpha, alpha, alpha, alpha)).save(out, "PNG")
            return out.getvalue(), "image/png"

    body, content_type = await asyncio.to_thread(convert)
    return web.Response(body=body, content_type=content_type, headers=headers)


@routes.get("/object_info")
async def get_object_info(request: web.Request) -> web.Response:
    e = emu(request)
    return web.json_response(e.nodes.all_info(lister(e)))


@routes.get("/object_info/{node_class}")
async def get_object_info_class(request: web.Request) -> web.Response:
    e = emu(request)
    name = request.match_info["node_class"]
    info = e.nodes.info(name, lister(e))
    return web.json_response({name: info} if info is not None else {})


@routes.get("/system_stats")
async def system_stats(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "system": {
                "os": os.name,
                "ram_total": 25276510208,
                "ram_free": 24338817024,
                "comfyui_version": VERSION,
                "required_frontend_version": "1.27.10",
                "installed_templates_version": "0.1.95",
                "required_templates_version": "0.1.95",
                "python_version": sys.version,
                "pytorch_version": "emulator",
                "embedded_python": False,
                "argv": sys.argv,
            },
            "devices": [
                {
                    "name": f"cpu emulator ({platform.machine()})",
                    "type": "cpu",
                    "index": None,
                    "vram_total": 25276510208,
                    "vram_free": 24338817024,
                    "torch_vram_total": 0,
                    "torch_vram_free": 0,
                }
            ],
        }
    )


@routes.get("/models")
async def models(request: web.Request) -> web.Response:
    return web.json_response([*FOLDER_KEYS, *emu(request).nodes.model_folders()])


@routes.get("/models/{folder}")
async def models_folder(request: web.Request) -> web.Response:
    folder = request.match_info["folder"]
    if folder not in FOLDER_KEYS and folder not in emu(request).nodes.model_folders():
        return web.Response(status=404)
    return web.json_response(emu(request).folders.list_models(folder))


@routes.get("/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    return web.json_response([Path(n).stem for n in emu(request).folders.list_models("embeddings")])


@routes.post("/free")
async def free(request: web.Request) -> web.Response:
    e = emu(request)
    body = await _json(request)
    for key in ("unload_models", "free_memory"):
        if body.get(key):
            e.free_pending[key] = True
    if e.running is None:
        e.apply_free()
    return web.Response()


def features(e: Emulator) -> dict[str, Any]:
    size: float = (
        float(e.config.max_upload_size) if e.config.max_upload_size_is_float else e.config.max_upload_size
    )
    return {"supports_preview_metadata": True, "max_upload_size": size}


@routes.get("/features")
async def get_features(request: web.Request) -> web.Response:
    return web.json_response(features(emu(request)))


@routes.get("/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    e = emu(request)
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    sid = request.query.get("clientId") or uuid.uuid4().hex
    e.sockets[sid] = ws
    e.socket_flags[sid] = {}  # a reconnect starts without flags, as ComfyUI's sockets_metadata
    try:
        status = {"status": {"exec_info": {"queue_remaining": e.queue_remaining()}}, "sid": sid}
        await e.send_frame(ws, json.dumps({"type": "status", "data": status}))
        if e.running is not None and e.running.extra_data.get("client_id") == sid:
            pass  # a node id is only known while executing; clients re-check /queue after reconnecting
        first = True
        async for msg in ws:
            if msg.type.name == "TEXT" and first:
                first = False
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and data.get("type") == "feature_flags":
                    flags = data.get("data", {})
                    e.socket_flags[sid] = flags if isinstance(flags, dict) else {}
                    await e.send_frame(ws, json.dumps({"type": "feature_flags", "data": features(e)}))
    finally:
        if e.sockets.get(sid) is ws:
            e.sockets.pop(sid, None)
        else:
            e.sockets.pop(sid, None)  # ComfyUI's quirk: closing an old socket drops the sid entirely
        e.socket_flags.pop(sid, None)
        e.frames_sent.pop(id(ws), None)
    return ws


# --- emulator-only ---------------------------------------------------------------------------------------
@routes.get("/emulator/stats")
async def stats(request: web.Request) -> web.Response:
    return web.json_response(emu(request).stats())


@routes.post("/emulator/faults")
async def set_faults(request: web.Request) -> web.Response:
    e = emu(request)
    try:
        e.faults.update(await request.json())
    except (KeyError, ValueError, TypeError) as exc:
        return web.json_response({"error": f"unknown or bad fault: {exc}"}, status=400)
    return web.json_response(e.faults.__dict__)


@routes.post("/emulator/object_info")
async def load_object_info(request: web.Request) -> web.Response:
    """Merge a recorded `/object_info` document: its classes are served, validated and run from now on."""
    e = emu(request)
    try:
        classes = check_record(await request.json())
    except (ValueError, RecordError) as exc:
        return web.json_response({"error": f"not an /object_info document: {exc}"}, status=400)
    return web.json_response(e.nodes.load(classes))


@web.middleware
async def origin_guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """ComfyUI's default guard: a loopback Host with a different Origin host is refused (403, empty)."""
    host, origin = request.headers.get("Host"), request.headers.get("Origin")
    if host and origin:
        host_name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        origin_host = origin.split("://", 1)[-1].split("/", 1)[0]
        loopback = host_name in ("localhost", "127.0.0.1", "[::1]", "::1")
        if loopback and origin_host != host and origin_host.rsplit(":", 1)[0] != host_name:
            return web.Response(status=403)
        if loopback and ":" in origin_host and ":" in host and origin_host != host:
            return web.Response(status=403)
    if request.method == "OPTIONS":
        return web.Response()
    response: web.StreamResponse = await handler(request)
    return response


def make_app(emulator: Emulator) -> web.Application:
    app = web.Application(client_max_size=emulator.config.max_upload_size, middlewares=[origin_guard])
    app[EMULATOR] = emulator
    api = web.RouteTableDef()
    for route in routes:
        assert isinstance(route, web.RouteDef)
        api.route(route.method, route.path, **route.kwargs)(route.handler)
        if not route.path.startswith("/emulator/"):
            api.route(route.method, "/api" + route.path, **route.kwargs)(route.handler)
    app.add_routes(api)

    async def start_worker(app: web.Application) -> Any:
        task = asyncio.create_task(emulator.worker())
        yield
        task.cancel()

    app.cleanup_ctx.append(start_worker)
    return app
