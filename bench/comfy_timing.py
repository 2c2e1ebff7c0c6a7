"""Timing a built-in graph on a ComfyUI instance, read from ComfyUI itself: what the GPU scripts share.

`bench.product_gpu` and `bench.redesign_gpu` send a filled built-in graph straight to ComfyUI (no API, no
dispatcher) and read:

- each node's time from the `/ws` `executing` messages (a node runs from its message to the next one),
  summed into the groups of nodes a script names (a product's passes, a redesign's stages);
- peak VRAM in use: `/system_stats` polled every VRAM_POLL_S during the run, `vram_total - vram_free` of the
  first device (the whole card, other processes included) and `torch_vram_total - torch_vram_free` (what
  PyTorch's allocator holds). Polling can miss a peak shorter than VRAM_POLL_S; the figures are a floor.

The first run of a measurement warms up (model loads); the means are over the runs after it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from websockets.sync.client import connect

VRAM_POLL_S = 0.1
RUN_TIMEOUT_S = 900.0
OTHER = "other"  # a node no group names: the scripts' tests check that none is left there

Groups = Mapping[str, frozenset[str]]


def group_of(groups: Groups, node_id: str) -> str:
    """The group a node's time is counted in; OTHER for a node no group names."""
    return next((name for name, nodes in groups.items() if node_id in nodes), OTHER)


def upload(http: httpx.Client, data: bytes, name: str) -> str:
    """A picture put in ComfyUI's input folder (`POST /upload/image`): the name LoadImage reads it by."""
    r = http.post("/upload/image", files={"image": (name, data, "image/png")}, data={"subfolder": "uploads"})
    r.raise_for_status()
    body = r.json()
    return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else str(body["name"])


class VramSampler:
    """Polls /system_stats in a thread; the peak of each reading."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=5)
        self.peak = {"device_used_bytes": 0, "torch_used_bytes": 0}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.is_set():
            self.read()
            self.stopped.wait(VRAM_POLL_S)

    def read(self) -> None:
        try:
            device = self.http.get("/system_stats").json()["devices"][0]
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            return
        used = int(device.get("vram_total", 0)) - int(device.get("vram_free", 0))
        torch_used = int(device.get("torch_vram_total", 0)) - int(device.get("torch_vram_free", 0))
        self.peak["device_used_bytes"] = max(self.peak["device_used_bytes"], used)
        self.peak["torch_used_bytes"] = max(self.peak["torch_used_bytes"], torch_used)

    def __enter__(self) -> VramSampler:
        self.read()
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.read()
        self.http.close()


def run_once(
    base_url: str, graph: Mapping[str, Any], prompt_id: str, groups: Groups, name: str
) -> dict[str, Any]:
    """Submit the graph and follow /ws: seconds per node, summed per group (under f"{name}_s"), the total,
    the peak VRAM."""
    client_id = str(uuid.uuid4())
    ws_url = base_url.replace("http", "ws", 1) + f"/ws?clientId={client_id}"
    node_s: dict[str, float] = {}
    with connect(ws_url, open_timeout=30) as ws, httpx.Client(base_url=base_url, timeout=60) as http:
        with VramSampler(base_url) as vram:
            start = time.perf_counter()
            r = http.post("/prompt", json={"prompt": graph, "client_id": client_id, "prompt_id": prompt_id})
            if r.status_code != 200:
                raise RuntimeError(f"POST /prompt: {r.status_code} {r.text[:1000]}")
            current, since = None, start
            while True:
                raw = ws.recv(timeout=RUN_TIMEOUT_S)
                if not isinstance(raw, str):
                    continue  # a binary preview
                message = json.loads(raw)
                data = message.get("data") or {}
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                if message["type"] == "execution_error":
                    raise RuntimeError(f"ComfyUI failed: {data.get('exception_message')}")
                if message["type"] == "executing":
                    now = time.perf_counter()
                    if current is not None:
                        node_s[current] = node_s.get(current, 0.0) + now - since
                    current, since = data.get("node"), now
                    if current is None:
                        break
            total = time.perf_counter() - start
    by_group: dict[str, float] = {}
    for node_id, seconds in node_s.items():
        by_group[group_of(groups, node_id)] = by_group.get(group_of(groups, node_id), 0.0) + seconds
    return {"total_s": total, f"{name}_s": by_group, "nodes_s": node_s, "vram": vram.peak}


GraphFor = Callable[[httpx.Client, int, str], Mapping[str, Any]]  # (ComfyUI, seed, job id) -> filled graph


def measure(base_url: str, runs: int, graph_for: GraphFor, groups: Groups, name: str) -> dict[str, Any]:
    """One warm-up run and `runs` timed ones, each with the graph `graph_for` fills for its seed: the
    device, the mean seconds per group (under f"mean_{name}_s") and in all, the peak VRAM of every run."""
    base_url = base_url.rstrip("/")
    with httpx.Client(base_url=base_url, timeout=60) as http:
        stats = http.get("/system_stats").json()
        results = []
        for seed in range(runs + 1):  # run 0 warms up: model loads
            prompt_id = str(uuid.uuid4())
            graph = graph_for(http, seed, f"bench-{prompt_id}")
            results.append(run_once(base_url, graph, prompt_id, groups, name))
    timed = results[1:]
    names = {g for r in timed for g in r[f"{name}_s"]}
    mean = {g: sum(r[f"{name}_s"].get(g, 0.0) for r in timed) / len(timed) for g in names}
    return {
        "device": (stats.get("devices") or [{}])[0].get("name", "?"),
        "comfyui_version": (stats.get("system") or {}).get("comfyui_version"),
        "runs": runs,
        "warmup": results[0],
        f"mean_{name}_s": mean,
        "mean_total_s": sum(r["total_s"] for r in timed) / len(timed),
        "peak_vram": {k: max(r["vram"][k] for r in results) for k in results[0]["vram"]},
        "timed": timed,
    }


def report(title: str, values: Mapping[str, Any], groups: Groups, name: str) -> str:
    """The figures of `measure` as lines: the mean of each group in the groups' order, the total, the peak."""
    lines = [f"{title} on {values['device']} (ComfyUI {values['comfyui_version']}), "
             f"{values['runs']} runs after a warm-up"]  # fmt: skip
    mean = values[f"mean_{name}_s"]
    for group in [*groups, OTHER]:
        if group in mean:
            lines.append(f"  {group:<20} {mean[group] * 1000:10.1f} ms")
    lines.append(f"  {'total':<20} {values['mean_total_s'] * 1000:10.1f} ms")
    peak = values["peak_vram"]
    device, torch = peak["device_used_bytes"] / 2**30, peak["torch_used_bytes"] / 2**30
    lines.append(
        f"  peak VRAM in use: device {device:.2f} GiB, torch {torch:.2f} GiB (polled every {VRAM_POLL_S:g} s)"
    )
    return "\n".join(lines)
