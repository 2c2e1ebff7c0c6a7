"""A disk that fills up for real: a size-limited tmpfs mounted for the run, and a ballast file that takes
every free block (writes then fail with ENOSPC, as on a full volume) until it is removed.

Mounting needs root (CAP_SYS_ADMIN); where it is refused, `small_disk` raises `DiskUnavailable` and the
caller says so rather than pretending.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

BALLAST = ".ballast"


class DiskUnavailable(RuntimeError):
    """No size-limited file system can be mounted here."""


@contextlib.contextmanager
def small_disk(mountpoint: Path, size_mib: int) -> Iterator[Path]:
    """`mountpoint` as a `size_mib` tmpfs until the block ends."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0777", "tmpfs", str(mountpoint)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DiskUnavailable(f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)


def fill(root: Path) -> int:
    """Take every free block of `root`'s file system; the bytes taken."""
    stats = os.statvfs(root)
    free = stats.f_bavail * stats.f_frsize
    fd = os.open(root / BALLAST, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            os.posix_fallocate(fd, 0, free)
        os.lseek(fd, 0, os.SEEK_END)
        chunk = b"\0" * 4096
        with contextlib.suppress(OSError):  # what fallocate left, a page at a time, until ENOSPC
            while True:
                os.write(fd, chunk)
    finally:
        os.close(fd)
    return free


def free(root: Path) -> None:
    (root / BALLAST).unlink(missing_ok=True)


def is_full(root: Path) -> bool:
    return os.statvfs(root).f_bavail == 0
