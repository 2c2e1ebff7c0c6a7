"""The processes a benchmark runs against, as production starts them, on free loopback ports.

ComfyUI emulators (`python -m mlserver.emulator`), the API under gunicorn (`backend/gunicorn.conf.py`,
after `python -m backend.prestart`), dispatchers (`python -m backend.dispatcher`), each with its log in
the run's work folder, and a fresh database per run: a SQLite file, or a `bench_<random>` PostgreSQL
database that is dropped afterwards. Every process is started from the work folder with every setting
in its environment, so a developer's `.env` never changes what is measured.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from backend.config import Settings

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL") or os.environ.get(
    "TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
DEMO_TOKEN = "studio-demo-token"
APP = "backend.main:app_factory()"
API_WORKERS: int = Settings.model_fields["api_workers"].default  # as configured for production
STOP_TIMEOUT_S = 15.0
# Settings a developer may have exported for `make run` are dropped: a benchmark measures the defaults.
SETTING_NAMES = frozenset(name.upper() for name in Settings.model_fields)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).is_success
    except httpx.HTTPError:
        return False


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


@dataclass
class Proc:
    """One child process with its log file; stopped with SIGTERM, killed if it does not exit."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.cwd / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> Proc:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def wait_http(self, url: str, timeout_s: float = 60.0) -> None:
        def ready() -> bool:
            self.check_alive()
            return answers(url)

        wait_until(ready, timeout_s, f"{self.name} at {url}")

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


# --- databases ----------------------------------------------------------------------------------------
def _pg_url(dbname: str, driver: str = "postgresql") -> str:
    return f"{driver}://{PG_ADMIN_URL.split('://', 1)[1].rsplit('/', 1)[0]}/{dbname}"


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """An empty database (not yet migrated) for one run: its SQLAlchemy URL."""
    if kind == "sqlite":
        path = workdir / f"studio-{secrets.token_hex(4)}.db"
        yield f"sqlite+aiosqlite:///{path}"
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database {kind!r}: sqlite or postgresql")
    name = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name, "postgresql+psycopg")
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


# --- the stack ----------------------------------------------------------------------------------------
def stack_env(db_url: str, workdir: Path, comfy_address: str = "", **settings: Any) -> dict[str, str]:
    """Environment for every backend process of one run; `settings` override the defaults by field name."""
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    values: dict[str, Any] = {
        "database_url": db_url,
        "comfy_ui_address": comfy_address,
        "storage_backend": "local",
        "data_dir": workdir / "data",
        "demo_designer_token": DEMO_TOKEN,
        "api_host": "127.0.0.1",
        "api_workers": API_WORKERS,
        **settings,
    }
    env.update({name.upper(): str(value) for name, value in values.items()})
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))  # bench's modules
    return env


@dataclass
class Emulator:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """This instance for COMFY_UI_ADDRESS (`host:port`: one instance, both job kinds)."""
        return f"127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.url}/emulator/stats", timeout=30).json()
        return data


@dataclass
class Api:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid)


@dataclass
class Stack:
    """The processes of one run; `close()` stops them in reverse order.

    Emulators boot while the migrations run: the API and the dispatchers start once they answer.
    """

    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    booting: list[Emulator] = field(default_factory=list)

    def _spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Proc:
        proc = Proc(name, list(argv), dict(env), self.workdir)
        self.procs.append(proc)
        return proc.start()

    def emulator(self, step_ms: float = 55.0, *, load_ms: tuple[float, float, float] = (0, 0, 0)) -> Emulator:
        """An emulator; `load_ms` = checkpoint, LoRA and ControlNet load times (0: loading not measured)."""
        port = free_port()
        base = self.workdir / f"comfyui-{port}"
        argv = [sys.executable, "-m", "mlserver.emulator", "--port", str(port), "--base-directory", str(base)]
        argv += ["--step-ms", str(step_ms), "--checkpoint-load-ms", str(load_ms[0])]
        argv += ["--lora-load-ms", str(load_ms[1]), "--controlnet-load-ms", str(load_ms[2])]
        emu = Emulator(self._spawn(f"emulator-{port}", argv, os.environ), port)
        self.booting.append(emu)
        return emu

    def wait_emulators(self) -> None:
        while self.booting:
            emu = self.booting.pop()
            emu.proc.wait_http(f"{emu.url}/system_stats")

    def prestart(self, env: Mapping[str, str]) -> None:
        """Migrations and the demo designer, as systemd's ExecStartPre does."""
        with (self.workdir / "prestart.log").open("ab") as log:
            subprocess.run(
                [sys.executable, "-m", "backend.prestart"],
                cwd=self.workdir,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
            )

    def api(self, env: Mapping[str, str]) -> Api:
        """The API as production runs it: gunicorn with the configured uvicorn workers."""
        self.wait_emulators()
        port = free_port()
        conf = str(ROOT / "backend" / "gunicorn.conf.py")
        argv = [sys.executable, "-m", "gunicorn", "-c", conf, APP]
        api = Api(self._spawn(f"api-{port}", argv, {**env, "API_PORT": str(port)}), port)
        api.proc.wait_http(f"{api.url}/healthz")
        workers = int(env["API_WORKERS"])
        wait_until(lambda: len(api.worker_pids()) >= workers, 30, "gunicorn workers")
        return api

    def dispatcher(self, env: Mapping[str, str], module: str = "backend.dispatcher", *args: str) -> Proc:
        self.wait_emulators()
        n = sum(p.name.startswith("dispatcher") for p in self.procs)
        return self._spawn(f"dispatcher-{n}", [sys.executable, "-m", module, *args], env)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@contextlib.contextmanager
def stack(workdir: Path) -> Iterator[Stack]:
    workdir.mkdir(parents=True, exist_ok=True)
    s = Stack(workdir)
    try:
        yield s
    finally:
        s.close()
