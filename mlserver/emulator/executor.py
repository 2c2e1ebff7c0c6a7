"""The emulator's state and worker: queue, one prompt at a time, ComfyUI's WebSocket message sequence,
history, node-output cache, interrupt, fault injection (reference §2–§4)."""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import logging
import os
import random
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from mlserver.emulator import mask_ops  # noqa: F401  (registers the mask and inpaint ops)
from mlserver.emulator.folders import Folders
from mlserver.emulator.generic import generic_op
from mlserver.emulator.ops import OPS, Interrupted, Op, OutOfMemoryError
from mlserver.emulator.previews import legacy_frame, metadata, metadata_frame
from mlserver.emulator.registry import NodeSet
from mlserver.emulator.weights import check_weights

logger = logging.getLogger(__name__)

MAXIMUM_HISTORY_SIZE = 10000
PREVIEWS_LOGGED = 2000  # (prompt id, step, steps, time sent) of the latest previews, for the bench
MODEL_FOLDERS = {"checkpoint": "checkpoints", "lora": "loras", "controlnet": "controlnet"}
OOM_TIPS = (
    "This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might "
    "have accidentally set the batch_size to a large number."
)


@dataclass
class Config:
    step_ms: float = 55.0
    checkpoint_load_ms: float = 2000.0
    lora_load_ms: float = 300.0
    controlnet_load_ms: float = 500.0
    cache: str = "classic"  # classic | none | lru
    cache_lru: int = 0
    max_upload_size: int = 100 * 1024 * 1024
    max_upload_size_is_float: bool = False
    preview_method: str = "none"  # ComfyUI's --preview-method: none | auto | latent2rgb | taesd
    preview_size: int = 512  # ComfyUI's --preview-size: the longest side of a preview, px


@dataclass
class Faults:
    fail_rate: float = 0.0
    oom_rate: float = 0.0
    crash_after_steps: int = 0
    drop_ws_after: int = 0
    http_500_rate: float = 0.0
    fail_next: int = 0
    oom_next: int = 0
    view_fail_next: int = 0
    seed: int | None = None

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise KeyError(key)
            setattr(self, key, type(getattr(self, key) or 0)(value) if key != "seed" else value)


def timestamp_ms() -> int:
    return int(time.time() * 1000)


def full_type_name(exc: BaseException) -> str:
    module = type(exc).__module__
    return type(exc).__qualname__ if module == "builtins" else f"{module}.{type(exc).__qualname__}"


@dataclass(order=True)
class Item:
    number: float
    prompt_id: str
    prompt: dict[str, Any] = field(compare=False)
    extra_data: dict[str, Any] = field(compare=False)
    outputs: list[str] = field(compare=False)

    def as_list(self, scrub: bool = False) -> list[Any]:
        extra = dict(self.extra_data)
        if scrub:
            extra.pop("auth_token_comfy_org", None)
            extra.pop("api_key_comfy_org", None)
        return [self.number, self.prompt_id, self.prompt, extra, self.outputs]


class RunContext:
    """One prompt's execution: what its nodes see (prompt, extra_data, progress, interrupt)."""

    def __init__(self, emulator: Emulator, item: Item) -> None:
        self.emulator = emulator
        self.item = item
        self.prompt = item.prompt
        self.extra_data = item.extra_data
        self.client_id: str | None = item.extra_data.get("client_id")
        self.node_id: str | None = None
        self.states: dict[str, dict[str, Any]] = {}

    def check_interrupt(self) -> None:
        if self.emulator.interrupt_flag:
            raise Interrupted()

    async def send(self, event: str, data: dict[str, Any], broadcast_without_client: bool = False) -> None:
        if self.client_id is not None:
            await self.emulator.send(event, data, self.client_id)
        elif broadcast_without_client:
            await self.emulator.send(event, data, None)

    async def progress_state(self, node_id: str, value: float, maximum: float, state: str) -> None:
        self.states[node_id] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node_id,
            "prompt_id": self.item.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        await self.send(
            "progress_state", {"prompt_id": self.item.prompt_id, "nodes": dict(self.states)}, True
        )

    async def progress(self, value: int, maximum: int, preview: Callable[[], bytes] | None = None) -> None:
        """One step: `progress_state`, then `progress`; with previews on, the step's JPEG from `preview`
        as event 4 before `progress` to a client that negotiated metadata, else as event 1 after it."""
        assert self.node_id is not None
        image = None
        if preview is not None and self.emulator.config.preview_method != "none":
            image = await asyncio.to_thread(preview)
        await self.progress_state(self.node_id, float(value), float(maximum), "running")
        with_metadata = self.emulator.supports_preview_metadata(self.client_id)
        if image is not None and with_metadata:
            meta = metadata(self.item.prompt_id, self.node_id)
            self.emulator.log_preview(self.item.prompt_id, value, maximum)
            await self.emulator.send_bytes(metadata_frame(image, meta), self.client_id)
        await self.send(
            "progress",
            {"value": value, "max": maximum, "prompt_id": self.item.prompt_id, "node": self.node_id},
            True,
        )
        if image is not None and not with_metadata:
            self.emulator.log_preview(self.item.prompt_id, value, maximum)
            await self.emulator.send_bytes(legacy_frame(image), self.client_id)


class Emulator:
    def __init__(self, folders: Folders, config: Config, faults: Faults) -> None:
        self.folders = folders
        self.config = config
        self.faults = faults
        self.rng = random.Random(faults.seed)
        self.counter = 0
        self.queue: list[Item] = []
        self.running: Item | None = None
        self.history: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.cache: OrderedDict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = OrderedDict()
        self.interrupt_flag = False
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.socket_flags: dict[str, dict[str, Any]] = {}  # sid → the client's feature_flags
        self.previews_sent: deque[tuple[str, int, int, float]] = deque(maxlen=PREVIEWS_LOGGED)
        self.frames_sent: dict[int, int] = {}
        self.loaded: dict[str, str] = {}
        self.loads = {"checkpoint": 0, "lora": 0, "controlnet": 0}
        self.executions: dict[str, int] = {}
        self.completed: dict[str, int] = {}
        self.runs: list[dict[str, Any]] = []
        self.total_steps = 0
        self.wake = asyncio.Event()
        self.free_pending: dict[str, bool] = {}
        self.nodes = NodeSet()

    def op(self, class_type: str) -> Op:
        """What runs a node: the emulator's own op, or the generic one for a recorded class."""
        if class_type in OPS:
            return OPS[class_type]
        return generic_op(self.nodes.loaded[class_type])

    # --- queue ----------------------------------------------------------------------------------------
    def next_number(self) -> int:
        n = self.counter
        self.counter += 1
        return n

    def queue_remaining(self) -> int:
        return len(self.queue) + (1 if self.running else 0)

    async def enqueue(self, item: Item) -> None:
        heapq.heappush(self.queue, item)
        await self.send_status()
        self.wake.set()

    async def send_status(self, sid: str | None = None) -> None:
        await self.send(
            "status", {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}, None
        )

    # --- sockets --------------------------------------------------------------------------------------
    async def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        message = json.dumps({"type": event, "data": data})
        targets = (
            list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        )
        for ws in targets:
            await self.send_frame(ws, message)

    def supports_preview_metadata(self, sid: str | None) -> bool:
        """ComfyUI's feature_flags.supports_feature: the flag must be exactly `true`."""
        return sid is not None and self.socket_flags.get(sid, {}).get("supports_preview_metadata") is True

    def log_preview(self, prompt_id: str, step: int, steps: int) -> None:
        self.previews_sent.append((prompt_id, step, steps, time.time()))

    async def send_bytes(self, frame: bytes, sid: str | None) -> None:
        """A binary frame to socket `sid`, or to every socket when None (as ComfyUI's send_bytes)."""
        targets = (
            list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        )
        for ws in targets:
            await self.send_frame(ws, frame)

    async def send_frame(self, ws: web.WebSocketResponse, message: str | bytes) -> None:
        if ws.closed:
            return
        try:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)
        except (ConnectionError, RuntimeError):
            return
        sent = self.frames_sent[id(ws)] = self.frames_sent.get(id(ws), 0) + 1
        if self.faults.drop_ws_after and sent >= self.faults.drop_ws_after:
            await ws.close()

    # --- models and faults ---------------------------------------------------------------------------
    async def read_weights(self, folder: str, name: str) -> None:
        """Fail as ComfyUI's load_torch_file does on a file that is empty, cut or not safetensors."""
        path = self.folders.model_path(folder, name)
        if path is not None:
            await asyncio.to_thread(check_weights, path)

    async def load_model(self, kind: str, name: str) -> None:
        if kind != "lora" or self.loaded.get(kind) != name:  # LoraLoader reuses the file it last read
            await self.read_weights(MODEL_FOLDERS[kind], name)
        if self.loaded.get(kind) == name:
            return
        self.loaded[kind] = name
        self.loads[kind] += 1
        delay = {
            "checkpoint": self.config.checkpoint_load_ms,
            "lora": self.config.lora_load_ms,
            "controlnet": self.config.controlnet_load_ms,
        }[kind]
        await asyncio.sleep(delay / 1000)

    def on_step(self) -> None:
        self.total_steps += 1
        if self.faults.crash_after_steps and self.total_steps >= self.faults.crash_after_steps:
            logger.error("fault injection: crashing after %d steps", self.total_steps)
            os._exit(17)

    def maybe_fail(self) -> None:
        if self.faults.oom_next > 0 or (self.faults.oom_rate and self.rng.random() < self.faults.oom_rate):
            self.faults.oom_next = max(0, self.faults.oom_next - 1)
            raise OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
                "22.20 GiB of which 1.06 GiB is free."
            )
        if self.faults.fail_next > 0 or (self.faults.fail_rate and self.rng.random() < self.faults.fail_rate):
            self.faults.fail_next = max(0, self.faults.fail_next - 1)
            raise RuntimeError("emulated sampler failure (fault injection)")

    # --- the worker ---------------------------------------------------------------------------------
    async def worker(self) -> None:
        while True:
            while not self.queue:
                self.wake.clear()
                self.apply_free()
                await self.wake.wait()
            item = heapq.heappop(self.queue)
            self.running = item
            try:
                await self.execute(item)
            except Exception:
                logger.exception("emulator worker failed on %s", item.prompt_id)
            finally:
                self.running = None
            self.apply_free()

    def apply_free(self) -> None:
        if self.free_pending.pop("free_memory", False):
            self.cache.clear()
            self.loaded.clear()
        if self.free_pending.pop("unload_models", False):
            self.loaded.clear()

    def signature(self, prompt: dict[str, Any], node_id: str, memo: dict[str, str]) -> str:
        if node_id in memo:
            return memo[node_id]
        node = prompt[node_id]
        parts: list[Any] = [node["class_type"]]
        if node["class_type"] == "LoadImage":
            path = self.folders.annotated(str(node["inputs"].get("image")))
            parts.append(hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing")
        declared = self.nodes.declared(node["class_type"])
        for name in sorted(node["inputs"]):
            if name not in declared:
                continue
            value = node["inputs"][name]
            if isinstance(value, list) and len(value) == 2 and value[0] in prompt:
                parts.append([name, self.signature(prompt, value[0], memo), value[1]])
            else:
                parts.append([name, value])
        memo[node_id] = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        return memo[node_id]

    def needed(self, prompt: dict[str, Any], outputs: list[str]) -> list[str]:
        seen: set[str] = set()
        stack = list(outputs)
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            for value in prompt[nid]["inputs"].values():
                if isinstance(value, list) and len(value) == 2 and value[0] in prompt:
                    stack.append(value[0])
        return [nid for nid in prompt if nid in seen]

    def order(self, prompt: dict[str, Any], todo: list[str], outputs: list[str]) -> list[str]:
        """Run order: ready nodes; output nodes first, then those close to an output (as ComfyUI)."""

        def deps(nid: str) -> set[str]:
            return {v[0] for v in prompt[nid]["inputs"].values() if isinstance(v, list) and len(v) == 2}

        consumers: dict[str, set[str]] = {nid: set() for nid in prompt}
        for nid in prompt:
            for d in deps(nid):
                consumers.setdefault(d, set()).add(nid)
        out_set = set(outputs)

        def rank(nid: str) -> int:
            if nid in out_set:
                return 0
            if consumers[nid] & out_set:
                return 1
            if any(consumers[c] & out_set for c in consumers[nid]):
                return 2
            return 3

        done = {nid for nid in prompt if nid not in todo}
        order: list[str] = []
        pending = list(todo)
        while pending:
            ready = [n for n in pending if deps(n) <= done]
            if not ready:
                raise RuntimeError("cycle in prompt")
            pick = min(ready, key=lambda n: (rank(n), pending.index(n)))
            order.append(pick)
            done.add(pick)
            pending.remove(pick)
        return order

    async def execute(self, item: Item) -> None:
        ctx = RunContext(self, item)
        pid = item.prompt_id
        self.interrupt_flag = False
        self.executions[pid] = self.executions.get(pid, 0) + 1
        started = time.time()
        await self.send_status()
        messages: list[list[Any]] = []

        async def record(event: str, data: dict[str, Any], broadcast: bool = False) -> None:
            messages.append([event, data])
            await ctx.send(event, data, broadcast)

        await record("execution_start", {"prompt_id": pid, "timestamp": timestamp_ms()})
        needed = self.needed(item.prompt, item.outputs)
        memo: dict[str, str] = {}
        sigs = {nid: self.signature(item.prompt, nid, memo) for nid in needed}
        if self.config.cache == "classic":
            for key in [k for k in self.cache if k not in set(sigs.values())]:
                del self.cache[key]
        elif self.config.cache == "none":
            self.cache.clear()
        cached = [nid for nid in needed if sigs[nid] in self.cache]
        await record("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": timestamp_ms()})
        values: dict[str, tuple[Any, ...]] = {nid: self.cache[sigs[nid]][0] for nid in cached}
        ui_outputs: dict[str, dict[str, Any]] = {}
        for nid in item.outputs:  # cached output nodes replay their UI result
            if nid in cached:
                ui = self.cache[sigs[nid]][1]
                await ctx.send("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid})
                if ui is not None:
                    ui_outputs[nid] = ui
                await ctx.progress_state(nid, 1, 1, "finished")
        executed: list[str] = []
        status, outcome = "success", "execution_success"
        todo = [nid for nid in needed if nid not in cached]
        try:
            for nid in self.order(item.prompt, todo, item.outputs):
                ctx.node_id = nid
                await ctx.progress_state(nid, 0.0, 1.0, "running")
                await ctx.send("executing", {"node": nid, "display_node": nid, "prompt_id": pid})
                ctx.check_interrupt()
                inputs = self.inputs_of(item.prompt, nid, values)
                try:
                    outputs, ui = await self.op(item.prompt[nid]["class_type"])(ctx, inputs)
                except (Interrupted, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    await self.report_error(record, ctx, nid, exc, executed, inputs)
                    status, outcome = "error", "execution_error"
                    break
                values[nid] = outputs
                executed.append(nid)
                self.cache[sigs[nid]] = (outputs, ui)
                if self.config.cache == "lru" and self.config.cache_lru:
                    while len(self.cache) > self.config.cache_lru:
                        self.cache.popitem(last=False)
                if ui is not None:
                    ui_outputs[nid] = ui
                    await ctx.send(
                        "executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": pid}
                    )
                await ctx.progress_state(nid, 1.0, 1.0, "finished")
        except Interrupted:
            status, outcome = "error", "execution_interrupted"
            await record(
                "execution_interrupted",
                {
                    "prompt_id": pid,
                    "node_id": ctx.node_id,
                    "node_type": item.prompt[ctx.node_id or ""]["class_type"],
                    "executed": executed,
                    "timestamp": timestamp_ms(),
                },
                True,
            )
        if outcome == "execution_success":
            await record("execution_success", {"prompt_id": pid, "timestamp": timestamp_ms()})
        self.store_history(item, ui_outputs, status, messages)
        self.completed[pid] = self.completed.get(pid, 0) + 1
        self.runs.append(
            {"prompt_id": pid, "started_at": started, "ended_at": time.time(), "status": outcome}
        )
        self.running = None
        await self.send_status()
        await ctx.send("executing", {"node": None, "prompt_id": pid})

    def inputs_of(
        self, prompt: dict[str, Any], nid: str, values: dict[str, tuple[Any, ...]]
    ) -> dict[str, Any]:
        declared = self.nodes.declared(prompt[nid]["class_type"])
        inputs: dict[str, Any] = {}
        for name, value in prompt[nid]["inputs"].items():
            if name not in declared:
                continue
            if isinstance(value, list) and len(value) == 2 and value[0] in values:
                inputs[name] = values[value[0]][value[1]]
            else:
                inputs[name] = (
                    value["__value__"] if isinstance(value, dict) and "__value__" in value else value
                )
        return inputs

    async def report_error(
        self,
        record: Any,
        ctx: RunContext,
        nid: str,
        exc: Exception,
        executed: list[str],
        inputs: dict[str, Any],
    ) -> None:
        is_oom = isinstance(exc, OutOfMemoryError)
        message = f"{exc}\n{OOM_TIPS}" if is_oom else f"{exc}\n"
        current = {
            k: [v if isinstance(v, str | int | float | bool) or v is None else str(v)]
            for k, v in inputs.items()
        }
        await record(
            "execution_error",
            {
                "prompt_id": ctx.item.prompt_id,
                "node_id": nid,
                "node_type": ctx.prompt[nid]["class_type"],
                "executed": executed,
                "exception_message": message,
                "exception_type": "torch.OutOfMemoryError" if is_oom else full_type_name(exc),
                "traceback": traceback.format_tb(exc.__traceback__),
                "current_inputs": current,
                "current_outputs": list(ctx.prompt),
                "timestamp": timestamp_ms(),
            },
        )
        if is_oom:
            self.loaded.clear()

    def store_history(
        self, item: Item, outputs: dict[str, Any], status: str, messages: list[list[Any]]
    ) -> None:
        if len(self.history) > MAXIMUM_HISTORY_SIZE:
            self.history.popitem(last=False)
        self.history[item.prompt_id] = {
            "prompt": item.as_list(scrub=True),
            "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": messages},
            "meta": {
                nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                for nid in outputs
            },
        }

    def stats(self) -> dict[str, Any]:
        return {
            "executions": self.executions,
            "completed": self.completed,
            "runs": self.runs,
            "lora_loads": self.loads["lora"],
            "checkpoint_loads": self.loads["checkpoint"],
            "controlnet_loads": self.loads["controlnet"],
            "total_steps": self.total_steps,
            "previews_sent": [
                {"prompt_id": pid, "step": step, "steps": steps, "sent_at": at}
                for pid, step, steps, at in self.previews_sent
            ],
            "queue_remaining": self.queue_remaining(),
        }
