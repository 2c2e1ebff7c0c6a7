"""The backend's processes as production starts them, on free loopback ports: the one harness of the
suite, bench/ and the soak.

The API under gunicorn (`backend/gunicorn.conf.py`), dispatchers (`python -m backend.dispatcher`) and
ComfyUI emulators (`tests/support/comfy.py`), each with its log file. Every process gets every setting
in its environment and none of the developer's (a `.env` or an exported variable never changes what a
test or a benchmark sees). `ProcessStack` starts a whole stack from the production defaults (the
benchmarks' view); tests build a `Settings` and start single processes from it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from backend.config import Settings
from tests.support.comfy import EmulatorProcess
from tests.support.net import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
APP = "backend.main:app_factory()"
GUNICORN_CONF = str(ROOT / "backend" / "gunicorn.conf.py")
PRODUCTION_TOKEN = "studio-demo-token"  # the demo designer `backend.prestart` creates in a ProcessStack
API_WORKERS: int = Settings.model_fields["api_workers"].default  # as configured for production
SETTING_NAMES = frozenset(name.upper() for name in Settings.model_fields)
API_STOP_TIMEOUT_S = 30.0
DISPATCHER_STOP_TIMEOUT_S = 45.0  # a dispatcher on SIGTERM finishes or releases its jobs first


# --- /proc ---------------------------------------------------------------------------------------------
def rss_mib(pid: int) -> float:
    """Resident memory of one process (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for pid {pid}")


def is_alive(pid: int) -> bool:
    """True while `pid` runs: a zombie (exited, not yet reaped) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # the state follows the name in (…), which may hold spaces


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(p) for p in text)
    return found


# --- environments --------------------------------------------------------------------------------------
def process_env(values: Mapping[str, Any]) -> dict[str, str]:
    """This process's environment without any setting of the developer's, plus `values` by field name."""
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update({name.upper(): str(value) for name, value in values.items() if value is not None})
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def settings_env(settings: Settings) -> dict[str, str]:
    """`settings` as environment variables, for a subprocess."""
    return process_env(settings.model_dump())


# --- processes -----------------------------------------------------------------------------------------
class ChildProcess:
    """One child process, its output in `log_path`, started in that file's folder (so that no `.env` of the
    developer's is read: the environment holds every setting)."""

    stop_timeout_s = API_STOP_TIMEOUT_S

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name, self.argv, self.env, self.log_path = name, list(argv), dict(env), log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was not started"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.log_path.parent, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_alive(self) -> None:
        """Raise with the log's tail when the process has exited."""
        check_alive(self.name, self.proc, self.log_path)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Send `sig`, wait for the exit (SIGKILL after `stop_timeout_s`); its status, None if not running."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.proc.wait(timeout=self.stop_timeout_s)
        self.proc.kill()
        return self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def start(self) -> Self:
        self.spawn()
        return self

    def __enter__(self) -> Self:
        """Start it, unless it runs already (`with proc.start():` must not spawn a second one)."""
        if not self.alive:
            self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def terminate(self) -> int | None:
        return self.stop(signal.SIGTERM)


def check_alive(name: str, proc: subprocess.Popen[bytes] | None, log_path: Path) -> None:
    if proc is not None and proc.poll() is not None:
        tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
        raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")


def emulator_alive(emu: EmulatorProcess) -> None:
    check_alive(f"emulator-{emu.port}", emu.proc, emu.log_path)


class ApiProcess(ChildProcess):
    """The API as production runs it: gunicorn with its uvicorn workers."""

    def __init__(
        self, env: Mapping[str, str], log_dir: Path, port: int | None = None, workers: int = 1
    ) -> None:
        self.port, self.workers = port or free_port(), workers
        env = {**env, "API_PORT": str(self.port), "API_WORKERS": str(workers)}
        argv = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, APP]
        super().__init__(f"api-{self.port}", argv, env, log_dir / f"api-{self.port}.log")

    @classmethod
    def of(cls, settings: Settings, log_dir: Path, port: int | None = None, workers: int = 1) -> ApiProcess:
        return cls(settings_env(settings), log_dir, port, workers)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> Self:
        """Start (again after a stop: the same port) and wait until /healthz answers and the workers run."""
        self.spawn()

        def ready() -> bool:
            self.check_alive()
            return answers(f"{self.url}/healthz")

        wait_until(ready, timeout_s, 0.05, f"{self.name} at {self.url}")
        wait_until(lambda: len(self.worker_pids()) >= self.workers, 30, 0.05, "gunicorn workers")
        return self

    def worker_pids(self) -> list[int]:
        """The master's children (its uvicorn workers), from /proc."""
        return children(self.pid)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).is_success
    except httpx.HTTPError:
        return False


class DispatcherProcess(ChildProcess):
    """`python -m backend.dispatcher` (or a bench variant of it) as a real process, to SIGKILL or SIGTERM."""

    stop_timeout_s = DISPATCHER_STOP_TIMEOUT_S

    def __init__(self, env: Mapping[str, str], log_path: Path, module: str = "backend.dispatcher") -> None:
        super().__init__(log_path.stem, [sys.executable, "-m", module], env, log_path)

    @classmethod
    def of(
        cls, settings: Settings, log_path: Path, extra_env: Mapping[str, str] | None = None
    ) -> DispatcherProcess:
        return cls(settings_env(settings) | dict(extra_env or {}), log_path)


# --- a whole stack from the production defaults ---------------------------------------------------------
def production_env(db_url: str, workdir: Path, comfy_address: str = "", **settings: Any) -> dict[str, str]:
    """Every backend process's environment: production's defaults, local storage in `workdir`, `settings`."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "comfy_ui_address": comfy_address,
        "storage_backend": "local",
        "data_dir": workdir / "data",
        "demo_designer_token": PRODUCTION_TOKEN,
        "api_host": "127.0.0.1",
        "api_workers": API_WORKERS,
        **settings,
    }
    return process_env(values)


def emulator_address(emu: EmulatorProcess) -> str:
    """One instance for COMFY_UI_ADDRESS (`host:port`: both job kinds)."""
    return f"127.0.0.1:{emu.port}"


@dataclass
class ProcessStack:
    """The processes of one run, stopped in reverse order when the block ends.

    Emulators boot while the migrations run: the API and the dispatchers start once they answer.
    """

    workdir: Path
    procs: list[ChildProcess | EmulatorProcess] = field(default_factory=list)
    booting: list[EmulatorProcess] = field(default_factory=list)

    def emulator(
        self,
        step_ms: float = 55.0,
        *,
        load_ms: tuple[float, float, float] = (0, 0, 0),
        extra_args: Sequence[str] = (),
    ) -> EmulatorProcess:
        """An emulator; `load_ms` = checkpoint, LoRA and ControlNet load times (0: loading not measured)."""
        port = free_port()
        args = ["--step-ms", str(step_ms), "--checkpoint-load-ms", str(load_ms[0])]
        args += ["--lora-load-ms", str(load_ms[1]), "--controlnet-load-ms", str(load_ms[2]), *extra_args]
        emu = EmulatorProcess(self.workdir / f"comfyui-{port}", port, args)
        self.procs.append(emu)
        emu.start(wait=False)
        self.booting.append(emu)
        return emu

    def wait_emulators(self) -> None:
        while self.booting:
            emu = self.booting.pop()

            def ready(emu: EmulatorProcess = emu) -> bool:
                emulator_alive(emu)
                return answers(f"{emu.url}/system_stats")

            wait_until(ready, 60, 0.05, f"the emulator at {emu.url}")

    def prestart(self, env: Mapping[str, str]) -> None:
        """Migrations and the demo designer, as systemd's ExecStartPre does."""
        prestart(env, self.workdir / "prestart.log")

    def api(self, env: Mapping[str, str]) -> ApiProcess:
        self.wait_emulators()
        api = ApiProcess(env, self.workdir, workers=int(env["API_WORKERS"]))
        self.procs.append(api)
        return api.start()

    def dispatcher(self, env: Mapping[str, str], module: str = "backend.dispatcher") -> DispatcherProcess:
        self.wait_emulators()
        n = sum(isinstance(p, DispatcherProcess) for p in self.procs)
        dispatcher = DispatcherProcess(env, self.workdir / f"dispatcher-{n}.log", module)
        self.procs.append(dispatcher)
        return dispatcher.start()

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def prestart(env: Mapping[str, str], log_path: Path) -> None:
    with log_path.open("ab") as log:
        subprocess.run(
            [sys.executable, "-m", "backend.prestart"],
            cwd=log_path.parent,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )


@contextlib.contextmanager
def process_stack(workdir: Path) -> Iterator[ProcessStack]:
    workdir.mkdir(parents=True, exist_ok=True)
    stack = ProcessStack(workdir)
    try:
        yield stack
    finally:
        stack.close()
