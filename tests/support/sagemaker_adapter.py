"""The SageMaker adapter (`python -m mlserver.sagemaker`) as a real uvicorn process on loopback, in front of
a ComfyUI (the emulator or a real one), for the adapter's tests and the backend's SageMaker stand-in.

    adapter = start_adapter(tmp_path, comfy_url)        # waits until /ping is 200
    httpx.post(f"{adapter.url}/invocations", json=payload)
    adapter.stop()                                      # SIGTERM: drains, exits 0
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.net import free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 45.0  # DRAIN_GRACE_S (30) and some


class AdapterProcess:
    """One adapter process; `extra_env` adds or overrides its environment (WARMUP, DRAIN_GRACE_S, ...)."""

    def __init__(
        self,
        base_dir: Path,
        comfy_url: str,
        port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.comfy_url = comfy_url.rstrip("/")
        self.port = port or free_port()
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = base_dir / f"adapter-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, wait: bool = True) -> None:
        """Start it; with `wait`, until /ping is 200 (ComfyUI up and the warm-up done)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("COMFY_URL", "ADAPTER_PORT", "ADAPTER_HOST")},
            "COMFY_URL": self.comfy_url,
            "ADAPTER_HOST": "127.0.0.1",
            "ADAPTER_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        cmd = [sys.executable, "-m", "mlserver.sagemaker"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        try:
            wait_http(f"{self.url}/ping", timeout_s=timeout_s)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; adapter log:\n{self.log()[-4000:]}") from None

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Wait for the process to exit; its exit status."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def terminate(self) -> None:
        """SIGTERM without waiting (the drain runs; use `wait()`)."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM and wait for the drain and the exit (SIGKILL if it outlives `timeout_s`)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout_s)
        return self.kill()

    def kill(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()


def start_adapter(
    base_dir: Path,
    comfy_url: str,
    *,
    port: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> AdapterProcess:
    adapter = AdapterProcess(base_dir, comfy_url, port, extra_env)
    adapter.start(wait)
    return adapter
