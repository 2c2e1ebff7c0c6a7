"""ComfyUI for the suite: the emulator as a real subprocess on loopback, or a real ComfyUI via COMFYUI_URL.

`comfyui_url` (session) is what every ComfyUI-facing test uses; with COMFYUI_URL set it is that server and
tests that need the emulator's own controls (`emulator` fixture, fault injection, restarts) are skipped.
`workload` sizes renders and waits from the server's /system_stats, so the same test fits the emulator, a
GPU and a CPU ComfyUI; `submitted_prompts` takes a test's prompts off the server's queue when it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.net import free_port, wait_http, wait_until

ROOT = Path(__file__).resolve().parents[2]
REAL_COMFYUI = os.environ.get("COMFYUI_URL", "").rstrip("/")
FAST = ("--checkpoint-load-ms", "0", "--lora-load-ms", "0", "--controlnet-load-ms", "0")
NEEDS_EMULATOR = "needs the emulator's controls (COMFYUI_URL points at a real ComfyUI)"


class EmulatorProcess:
    """`python -m mlserver.emulator` as a child process that tests can stop, kill and restart."""

    def __init__(self, base_dir: Path, port: int | None = None, args: Sequence[str] = ()) -> None:
        self.base_dir = base_dir
        self.port = port or free_port()
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = base_dir / f"emulator-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "mlserver.emulator",
            "--port",
            str(self.port),
            "--base-directory",
            str(self.base_dir),
            *self.args,
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            wait_http(f"{self.url}/system_stats", timeout_s=30)

    def _end(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def restart(self, wait: bool = True) -> None:
        self.kill()
        self.start(wait)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.url}/emulator/stats", timeout=5).json()
        return data

    def set_faults(self, **faults: Any) -> None:
        httpx.post(f"{self.url}/emulator/faults", json=faults, timeout=5).raise_for_status()


def start_emulator(
    base_dir: Path,
    *,
    port: int | None = None,
    step_ms: float = 2,
    extra_args: Sequence[str] = (),
    wait: bool = True,
) -> EmulatorProcess:
    emu = EmulatorProcess(base_dir, port, ["--step-ms", str(step_ms), *FAST, *extra_args])
    emu.start(wait)
    return emu


@pytest.fixture(scope="session")
def comfyui_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ComfyUI every ComfyUI-facing test talks to: COMFYUI_URL, else a session emulator."""
    if REAL_COMFYUI:
        yield REAL_COMFYUI
        return
    emu = start_emulator(tmp_path_factory.mktemp("comfyui"))
    try:
        yield emu.url
    finally:
        emu.stop()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """A fresh emulator of this test's own (fault injection, restarts)."""
    if REAL_COMFYUI:
        pytest.skip(NEEDS_EMULATOR)
    emu = start_emulator(tmp_path / "comfyui")
    try:
        yield emu
    finally:
        emu.kill()


@dataclass(frozen=True)
class Workload:
    """How much a ComfyUI-facing test asks of the server at hand, and how long it waits for it.

    A normal render is `side`² with `steps` steps. A long one (`long_*`) must still be sampling when the
    test acts on it (interrupt, cancel, pre-queue); tests end it themselves, or `submitted_prompts` does.
    Waits count from a cold server (models not loaded yet).
    """

    name: str
    side: int
    steps: int
    long_side: int
    long_steps: int  # at most 100: the backend's limit
    long_batch: int
    first_step_s: float  # submission to the first sampler step
    render_s: float  # submission to the images of a normal render; also the longest gap between frames
    test_timeout_s: float  # one test, all its renders

    def job(self, **overrides: Any) -> dict[str, Any]:
        """A normal render's parameters for POST /api/jobs."""
        return {"width": self.side, "height": self.side, "steps": self.steps, **overrides}

    def long_job(self, **overrides: Any) -> dict[str, Any]:
        size = {"width": self.long_side, "height": self.long_side, "num_images": self.long_batch}
        return {**size, "steps": self.long_steps, **overrides}


# The emulator (2 ms a step at 512², see start_emulator) and a GPU: a long render is seconds to tens of them.
FAST_WORKLOAD = Workload("fast", 256, 3, 1024, 100, 4, 60, 60, 120)
# A CPU ComfyUI: ~3 s a step at 256², ~20 s to load the models, 4x slower when the machine is busy.
CPU_WORKLOAD = Workload("cpu", 256, 3, 256, 100, 1, 300, 300, 1200)


def workload_of(stats: dict[str, Any]) -> Workload:
    """Which workload fits the server whose GET /system_stats this is. The emulator's device says cpu, but
    its steps take what its --step-ms says (milliseconds in the suite): a fast server."""
    if stats.get("system", {}).get("pytorch_version") == "emulator":
        return FAST_WORKLOAD
    return FAST_WORKLOAD if any(d.get("type") != "cpu" for d in stats.get("devices", [])) else CPU_WORKLOAD


def read_workload(url: str) -> Workload:
    return workload_of(httpx.get(f"{url}/system_stats", timeout=30).json())


@pytest.fixture(scope="session")
def workload(comfyui_url: str) -> Workload:
    return read_workload(comfyui_url)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A CPU ComfyUI needs minutes a test: its tests get the workload's time limit instead of the default."""
    if not REAL_COMFYUI or not any(item.get_closest_marker("comfyui") for item in items):
        return
    limit = read_workload(REAL_COMFYUI).test_timeout_s
    for item in items:
        if item.get_closest_marker("comfyui"):
            item.add_marker(pytest.mark.timeout(limit))


class SubmittedPrompts:
    """The prompts a test put on ComfyUI's queue. `clear` deletes those still pending, interrupts the one
    running and waits until none is left, so a failed test never leaves work that delays the next one.
    Prompts of other clients (another xdist worker on a shared server) are left alone."""

    def __init__(self, url: str, wait_s: float) -> None:
        self.url = url
        self.wait_s = wait_s
        self.ids: set[str] = set()
        self.recognisers: list[Callable[[str], bool]] = []

    def add(self, prompt_id: str) -> None:
        self.ids.add(prompt_id)

    def recognise(self, is_ours: Callable[[str], bool]) -> None:
        """Also count as this test's the prompts `is_ours` accepts (those a dispatcher submitted for it)."""
        self.recognisers.append(is_ours)

    def _is_ours(self, prompt_id: str) -> bool:
        return prompt_id in self.ids or any(is_ours(prompt_id) for is_ours in self.recognisers)

    def _clear_once(self, http: httpx.Client) -> bool:
        queue = http.get("/queue").json()
        running = [i[1] for i in queue["queue_running"] if self._is_ours(i[1])]
        pending = [i[1] for i in queue["queue_pending"] if self._is_ours(i[1])]
        if pending:
            http.post("/queue", json={"delete": pending})
        for prompt_id in running:
            http.post("/interrupt", json={"prompt_id": prompt_id})
        return not running and not pending

    def clear(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            wait_until(
                lambda: self._clear_once(http), self.wait_s, 0.2, "this test's prompts to leave ComfyUI"
            )


@pytest.fixture
def submitted_prompts(comfyui_url: str, workload: Workload) -> Iterator[SubmittedPrompts]:
    prompts = SubmittedPrompts(comfyui_url, workload.first_step_s)
    try:
        yield prompts
    finally:
        prompts.clear()


def write_weights(path: Path, data: bytes = bytes(4)) -> Path:
    """A small but valid safetensors file (one U8 tensor): the emulator loads it as a model, as ComfyUI
    would load its header; a file that is not valid safetensors fails the prompt, as there."""
    tensor = {"dtype": "U8", "shape": [len(data)], "data_offsets": [0, len(data)]}
    header = json.dumps({"__metadata__": {"format": "pt"}, "weight": tensor}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path
