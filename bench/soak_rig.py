"""The soak's processes and the faults it can inject into them, from `tests/support/`'s harness.

A `Rig` is one emulator, the API under gunicorn, N dispatcher processes, a database (a SQLite file, or
a PostgreSQL cluster of the soak's own so that the server can be restarted) and a storage (a
size-limited tmpfs that can fill up, or moto behind a fault-injecting proxy). `inject` produces one
fault; `calm` ends every fault so that what was accepted can finish and be counted.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.config import Settings
from backend.migrate import upgrade
from tests.support import disk
from tests.support.aws import CREDENTIALS, REGION, MotoServer, serve_moto
from tests.support.backend import create_designers, make_settings
from tests.support.comfy import EmulatorProcess
from tests.support.db import fresh_database
from tests.support.harness import ApiProcess, DispatcherProcess, is_alive, settings_env
from tests.support.net import free_port, wait_until
from tests.support.pg_cluster import ClusterUnavailable, PgCluster, pg_cluster
from tests.support.s3_faults import FaultyS3Proxy, S3Faults

BUCKET = "soak-renders"
DISK_MIB_PER_JOB = 1.0
DISK_MIN_MIB = 64
DISK_FULL_S = (1.0, 4.0)
S3_OUTAGE_S = (2.0, 12.0)  # past botocore's retries (4 attempts, up to about 7 s) now and then
ORPHAN_EXIT_TIMEOUT_S = 90.0


@dataclass
class Rig:
    settings: Settings
    env: dict[str, str]
    workdir: Path
    emulator: EmulatorProcess
    api: ApiProcess
    cluster: PgCluster | None = None
    proxy: FaultyS3Proxy | None = None
    disk: Path | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    dispatchers: list[DispatcherProcess] = field(default_factory=list)
    started: int = 0

    def extra_faults(self) -> tuple[str, ...]:
        wanted = {"restart_postgres": self.cluster, "s3_outage": self.proxy, "disk_full": self.disk}
        return tuple(name for name, means in wanted.items() if means is not None)

    def new_dispatcher(self) -> None:
        self.started += 1
        log = self.workdir / f"dispatcher-{self.started}.log"
        self.dispatchers.append(DispatcherProcess(self.env, log).start())

    def replace_exited_dispatchers(self) -> int:
        """As systemd's Restart=always would; how many had exited on their own."""
        exited = [d for d in self.dispatchers if not d.alive]
        for d in exited:
            self.dispatchers.remove(d)
            self.new_dispatcher()
        return len(exited)

    def kill_comfyui(self, down_s: float, killed: Callable[[], None]) -> None:
        self.emulator.kill()
        killed()
        time.sleep(down_s)
        self.emulator.start()

    def inject(self, fault: str, rng: random.Random) -> None:
        actions: dict[str, Callable[[], object]] = {
            "kill_dispatcher": lambda: self._replace_dispatcher(rng, signal.SIGKILL),
            "term_dispatcher": lambda: self._replace_dispatcher(rng, signal.SIGTERM),
            "restart_api": self._restart_api,
            "kill_api": self._kill_api,
            "restart_postgres": lambda: self._restart_postgres(rng),
            "s3_outage": lambda: self._s3_outage(rng.uniform(*S3_OUTAGE_S)),
            "disk_full": lambda: self._disk_full(rng.uniform(*DISK_FULL_S)),
        }
        actions[fault]()

    def _replace_dispatcher(self, rng: random.Random, sig: int) -> None:
        victim = self.dispatchers.pop(rng.randrange(len(self.dispatchers)))
        victim.stop(sig)
        self.new_dispatcher()

    def _restart_api(self) -> None:
        """`systemctl restart`: SIGTERM (in-flight requests finish), then a new master on the same port."""
        self.api.stop(signal.SIGTERM)
        self.api.start()

    def _kill_api(self) -> None:
        """The master dies; its workers notice and exit before the new master can have the port."""
        workers = self.api.worker_pids()
        self.api.stop(signal.SIGKILL)
        wait_until(lambda: not any(is_alive(p) for p in workers), ORPHAN_EXIT_TIMEOUT_S, 0.1, "orphans")
        self.api.start()

    def _restart_postgres(self, rng: random.Random) -> None:
        assert self.cluster is not None
        self.cluster.restart(rng.choice(("fast", "immediate")), down_s=rng.uniform(0.5, 3.0))

    def _s3_outage(self, hold_s: float) -> None:
        assert self.proxy is not None
        self.proxy.outage = True
        time.sleep(hold_s)
        self.proxy.outage = False

    def _disk_full(self, hold_s: float) -> None:
        assert self.disk is not None
        disk.fill(self.disk)
        time.sleep(hold_s)
        disk.free(self.disk)

    def calm(self) -> None:
        """Every fault ended and every process up: what is left can finish."""
        if self.proxy is not None:
            self.proxy.faults, self.proxy.outage = S3Faults(), False
        if self.disk is not None:
            disk.free(self.disk)
        if not self.emulator.alive:
            self.emulator.start()
        if not self.api.alive:
            self.api.start()
        self.replace_exited_dispatchers()

    def storage_faults(self) -> dict[str, int]:
        return dict(self.proxy.counts) if self.proxy is not None else {}

    def close(self) -> None:
        for d in self.dispatchers:
            d.terminate()


def _database(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> tuple[str, Any]:
    """The database URL and the cluster that can be restarted (None: no server restarts)."""
    if args.database == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / 'soak.db'}", None
    try:
        cluster = stack.enter_context(pg_cluster())
    except (ClusterUnavailable, OSError) as exc:
        return stack.enter_context(fresh_database("postgresql", tmp)), str(exc)
    return cluster.create_database("studio_soak"), cluster


def _storage(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> tuple[dict[str, Any], Any]:
    """Storage settings and the fault means (a proxy, a disk, or the reason there is none)."""
    if args.storage == "s3":
        moto = stack.enter_context(serve_moto())
        MotoServer(moto.endpoint_url).client("s3").create_bucket(Bucket=BUCKET)
        proxy = FaultyS3Proxy(moto.endpoint_url, args.seed).start()
        stack.callback(proxy.stop)
        rate = args.fault_rate
        proxy.faults = S3Faults(error_rate=rate, slowdown_rate=rate, slow_rate=0.1, slow_s=(0.1, 1.5))
        return {"storage_backend": "s3", "s3_bucket": BUCKET, "s3_endpoint_url": proxy.url}, proxy
    size = max(DISK_MIN_MIB, int(args.jobs * DISK_MIB_PER_JOB))
    try:
        root = stack.enter_context(disk.small_disk(tmp / "disk", size))
    except disk.DiskUnavailable as exc:
        return {"data_dir": tmp / "data"}, str(exc)
    return {"data_dir": root / "data"}, root


def _emulator(args: argparse.Namespace, tmp: Path) -> EmulatorProcess:
    rate = args.fault_rate
    return EmulatorProcess(tmp / "comfyui", free_port(), [
        "--step-ms", str(args.step_ms), "--checkpoint-load-ms", "0", "--lora-load-ms", "20",
        "--fail-rate", str(rate), "--oom-rate", str(rate), "--http-500-rate", str(rate / 2),
        "--fault-seed", str(args.seed),
    ])  # fmt: skip


@contextlib.contextmanager
def rig(args: argparse.Namespace, tmp: Path) -> Iterator[Rig]:
    with contextlib.ExitStack() as stack:
        db_url, cluster = _database(args, tmp, stack)
        storage, means = _storage(args, tmp, stack)
        emulator = _emulator(args, tmp)
        data_dir = storage.pop("data_dir", tmp / "data")
        settings = make_settings(db_url, data_dir, emulator.url, stall_after_s=3.0, heartbeat_interval_s=0.5,
                                 max_active_jobs_per_designer=args.jobs + 1, **storage)  # fmt: skip
        upgrade(settings)
        create_designers(settings)
        emulator.start()
        stack.callback(emulator.stop)
        env = settings_env(settings) | {k.upper(): v for k, v in CREDENTIALS.items()}
        env["AWS_DEFAULT_REGION"] = REGION
        api = stack.enter_context(ApiProcess(env, tmp, workers=2))
        r = Rig(settings, env, tmp, emulator, api)
        r.cluster = cluster if isinstance(cluster, PgCluster) else None
        r.proxy = means if isinstance(means, FaultyS3Proxy) else None
        r.disk = means if isinstance(means, Path) else None
        if isinstance(cluster, str):
            r.unavailable["restart_postgres"] = cluster
        if isinstance(means, str):
            r.unavailable["disk_full"] = means
        stack.callback(r.close)
        for _ in range(args.dispatchers):
            r.new_dispatcher()
        yield r
