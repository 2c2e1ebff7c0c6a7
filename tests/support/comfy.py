"""ComfyUI for the suite: the emulator as a real subprocess on loopback, or a real ComfyUI via COMFYUI_URL.

`comfyui_url` (session) is what every ComfyUI-facing test uses; with COMFYUI_URL set it is that server and
tests that need the emulator's own controls (`emulator` fixture, fault injection, restarts) are skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.net import free_port, wait_http

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


def write_weights(path: Path, data: bytes = bytes(4)) -> Path:
    """A small but valid safetensors file (one U8 tensor): the emulator loads it as a model, as ComfyUI
    would load its header; a file that is not valid safetensors fails the prompt, as there."""
    tensor = {"dtype": "U8", "shape": [len(data)], "data_offsets": [0, len(data)]}
    header = json.dumps({"__metadata__": {"format": "pt"}, "weight": tensor}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path
