"""Models from S3 into ComfyUI's model folders, verified by sha256, before ComfyUI may start.

    python -m mlserver.model_sync --bucket B --models-dir /var/lib/studio/models \\
        --marker /var/lib/studio/models/.synced.json [--verify-only] [--jobs 2] [--allow-unpinned]
        [--folder rembg]

What is synced: every base model of `mlserver/models.toml` (checkpoint, ControlNet), every style LoRA
of the style manifest (`loras/styles.toml`) and every model a lead added through the API (the added
manifest, `models/manifest.added.json` in the bucket; `--added-key ''` leaves them out; `--verify-only`
checks the base set only), each to `<models-dir>/<folder>/<file>` (`contract.model_manifest`). `--folder`
keeps the entries of the folders named: the API host syncs its background-removal model so
(`--folder rembg`), with the same checks, and nothing else.

Per file: already there with the manifest's size and sha256 → kept (a `.<file>.sha256` sidecar records
size, mtime and hash, so an unchanged multi-GB checkpoint is not re-hashed at every boot); otherwise it is
streamed into `.<file>.partial` while hashed, checked (size and sha256), fsynced and renamed into place
atomically. A short read, a dropped connection or a wrong hash deletes the partial file and retries with
back-off; a file is never put in place unverified. An object whose `sha256` metadata (written by
`loras.publish`) contradicts the manifest is refused before any byte is downloaded.

A manifest entry without a sha256 is "not pinned yet" and refused. `--allow-unpinned` is the operator's
way to pin one: it downloads the file (checked against the object's `sha256` metadata when there is one)
and prints the sha256 and size to write into the manifest, but such a run never counts as verified: it
exits 1 and writes no marker, so ComfyUI does not start on a file nobody pinned.

The marker (JSON, read by the backend's /readyz through MODELS_MARKER) is removed when a sync starts and
written only when every file is verified; systemd starts ComfyUI only after this exits 0. `--refresh` is
the periodic run beside a running ComfyUI (studio-model-refresh.timer): the marker is kept while new files
arrive, since what is in place stays verified, and rewritten when all are. ComfyUI needs no signal: a file
renamed into a folder changes the folder's mtime, which invalidates ComfyUI's cached listing, so the next
`/models/<folder>` and `/object_info` show it. Runs take a lock on `<models-dir>/.sync.lock`, one at a
time. Exit status: 0 all verified, 1 some file missing, wrong or unpinned, 2 bad usage or manifest.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error

from contract.files import atomic_write_text, sha256_file
from contract.model_manifest import (
    ADDED_MANIFEST_KEY,
    MODELS_MANIFEST,
    ModelEntry,
    load_models_toml,
    parse_added,
    style_entries,
    unique_entries,
)
from contract.styles import ManifestError, load_manifest

logger = logging.getLogger("mlserver.model_sync")  # not __main__ under `python -m`

BUCKET_ENV = "MODELS_BUCKET"
MIB = 1024 * 1024
CHUNK_BYTES = 4 * MIB
PROGRESS_EVERY_BYTES = 256 * MIB
DEFAULT_ATTEMPTS = 3
DEFAULT_JOBS = 2
RETRY_BASE_S = 1.0
LOCK_FILE = ".sync.lock"
# A dropped connection or short read is worth another try; anything else (403, disk full) is not.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    BotoCoreError,
    Urllib3Error,
    ConnectionError,
    TimeoutError,
)


class SyncError(Exception):
    """One file could not be put in place verified (the message says why)."""


class CorruptDownload(SyncError):
    """The bytes received do not match what was expected (size or sha256): worth another try."""


class Status(StrEnum):
    CACHED = "cached"
    DOWNLOADED = "downloaded"
    UNPINNED = "unpinned"
    FAILED = "failed"


Entry = ModelEntry  # the name this module and its tests have always used


@dataclass(frozen=True)
class Result:
    entry: Entry
    status: Status
    detail: str = ""
    seconds: float = 0.0
    sha256: str = ""  # of the file now in place (empty when it failed)
    size_bytes: int = 0

    @property
    def ok(self) -> bool:
        """Verified against the manifest: the only state a marker may vouch for."""
        return self.status in (Status.CACHED, Status.DOWNLOADED)


@dataclass(frozen=True)
class Options:
    attempts: int = DEFAULT_ATTEMPTS
    verify_only: bool = False
    allow_unpinned: bool = False
    keep_marker: bool = False  # a refresh: the files in place stay verified while new ones arrive
    progress_every_bytes: int = PROGRESS_EVERY_BYTES
    chunk_bytes: int = CHUNK_BYTES
    retry_base_s: float = RETRY_BASE_S
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)


# --- manifests --------------------------------------------------------------------------------------------


def load_entries(
    models_manifest: Path, style_manifest: Path | None, added: Sequence[Entry] = ()
) -> list[Entry]:
    """Base models, every style LoRA and the added models; ManifestError if any manifest is malformed or
    two of them want one file with different contents."""
    entries = load_models_toml(models_manifest)
    entries += style_entries(load_manifest(style_manifest))
    return unique_entries([*entries, *added])


def in_folders(entries: Sequence[Entry], folders: Sequence[str]) -> list[Entry]:
    """The entries of these folders (none named: all); ManifestError when a named folder has none."""
    if not folders:
        return list(entries)
    empty = sorted(set(folders) - {e.folder for e in entries})
    if empty:
        raise ManifestError(f"no model of folder {', '.join(empty)} in the manifests")
    return [e for e in entries if e.folder in folders]


def fetch_added(s3: Any, bucket: str, key: str) -> list[Entry]:
    """The added manifest in the bucket (none yet: no added models); ManifestError when unreadable."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NotFound"):
            return []
        raise ManifestError(f"s3://{bucket}/{key}: {exc}") from exc
    except (BotoCoreError, Urllib3Error) as exc:
        raise ManifestError(f"s3://{bucket}/{key}: {exc}") from exc
    try:
        return parse_added(body)
    except ManifestError as exc:
        raise ManifestError(f"s3://{bucket}/{key}: {exc}") from exc


# --- what is on disk --------------------------------------------------------------------------------------


def _sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}.sha256")


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def hash_in_place(path: Path) -> str | None:
    """The sha256 of the file (None if absent), from the sidecar while size and mtime are unchanged."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(_sidecar(path).read_text())
        if {k: cached.get(k) for k in stamp} == stamp and isinstance(cached.get("sha256"), str):
            return str(cached["sha256"])
    digest = sha256_file(path)
    _write_sidecar(path, digest)
    return digest


def is_in_place(path: Path, entry: Entry) -> bool:
    """The file is there with the manifest's size and sha256 (hashing only when it changed)."""
    with contextlib.suppress(FileNotFoundError):
        if entry.size_bytes and path.stat().st_size != entry.size_bytes:
            return False  # no need to hash 2 GB to know it is wrong
    return hash_in_place(path) == entry.sha256


def _write_sidecar(path: Path, digest: str) -> None:
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    # Best effort: without a sidecar the next start hashes the file again, nothing worse.
    with contextlib.suppress(OSError):
        _sidecar(path).write_text(json.dumps(record))


def remove_stale_partials(models_dir: Path, entries: Sequence[Entry]) -> None:
    """A run killed mid-download (SIGKILL, power loss) leaves a partial file; nothing else may own it."""
    for folder in sorted({e.folder for e in entries}):
        for partial in (models_dir / folder).glob(".*.partial"):
            logger.info("removing %s left by an interrupted run", partial)
            partial.unlink(missing_ok=True)


# --- S3 ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteObject:
    size_bytes: int
    published_sha256: str  # the `sha256` metadata loras.publish writes; "" when absent


def stat_object(s3: Any, bucket: str, entry: Entry) -> RemoteObject:
    try:
        head = s3.head_object(Bucket=bucket, Key=entry.s3_key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NotFound"):
            raise SyncError(f"{entry.name}: s3://{bucket}/{entry.s3_key} does not exist") from exc
        raise
    return RemoteObject(int(head["ContentLength"]), str(head.get("Metadata", {}).get("sha256", "")))


def expected_sha256(bucket: str, entry: Entry, remote: RemoteObject) -> str:
    """What the downloaded bytes must hash to ("" only for an unpinned entry without metadata)."""
    where = f"{entry.name}: s3://{bucket}/{entry.s3_key}"
    if entry.size_bytes and remote.size_bytes != entry.size_bytes:
        raise SyncError(f"{where} is {remote.size_bytes} bytes, the manifest expects {entry.size_bytes}")
    if not entry.is_pinned:
        return remote.published_sha256
    if remote.published_sha256 and remote.published_sha256 != entry.sha256:
        raise SyncError(
            f"{where} was published with sha256 {remote.published_sha256}, "
            f"the manifest expects {entry.sha256}"
        )
    return entry.sha256


def stream_into(s3: Any, bucket: str, entry: Entry, partial: Path, size: int, options: Options) -> str:
    """Write the object into `partial` (fsynced), logging progress; its sha256. CorruptDownload if short."""
    digest = hashlib.sha256()
    received, next_report = 0, options.progress_every_bytes
    body = s3.get_object(Bucket=bucket, Key=entry.s3_key)["Body"]
    with partial.open("wb") as out:
        for chunk in body.iter_chunks(options.chunk_bytes):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if received >= next_report:
                logger.info(
                    "%s: %d%% (%.1f of %.1f MiB)",
                    entry.name,
                    100 * received // size,
                    received / MIB,
                    size / MIB,
                )
                next_report += options.progress_every_bytes
        out.flush()
        os.fsync(out.fileno())
    if received != size:
        raise CorruptDownload(f"{entry.name}: received {received} of {size} bytes")
    return digest.hexdigest()


def fetch(s3: Any, bucket: str, entry: Entry, target: Path, options: Options) -> tuple[str, int]:
    """One attempt: stream, verify, rename into place atomically; the sha256 and size put in place."""
    remote = stat_object(s3, bucket, entry)
    expected = expected_sha256(bucket, entry, remote)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(target)
    logger.info(
        "%s: downloading s3://%s/%s (%.1f MiB)",
        entry.name,
        bucket,
        entry.s3_key,
        remote.size_bytes / MIB,
        extra={"action": "model_download_started", "model": entry.name},
    )
    try:
        digest = stream_into(s3, bucket, entry, partial, remote.size_bytes, options)
        if expected and digest != expected:
            raise CorruptDownload(
                f"{entry.name}: s3://{bucket}/{entry.s3_key} has sha256 {digest}, expected {expected}"
            )
        os.replace(partial, target)
        _fsync_dir(target.parent)  # the rename itself survives a power cut
        _write_sidecar(target, digest)
    finally:
        partial.unlink(missing_ok=True)
    return digest, remote.size_bytes


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- one entry, all entries -------------------------------------------------------------------------------


def _refusal(entry: Entry, options: Options) -> str | None:
    if not entry.s3_key:
        return f"{entry.name}: no s3_key in the manifest"
    if not entry.is_pinned and (options.verify_only or not options.allow_unpinned):
        return (
            f"{entry.name}: no sha256 pinned in the manifest yet (publish it first, or run with "
            "--allow-unpinned to download it and print the sha256 to pin)"
        )
    return None


def sync_entry(s3: Any, bucket: str, entry: Entry, models_dir: Path, options: Options) -> Result:
    started = time.monotonic()
    if reason := _refusal(entry, options):
        return Result(entry, Status.FAILED, reason)
    target = entry.path(models_dir)
    try:
        in_place = entry.is_pinned and is_in_place(target, entry)
    except OSError as exc:
        return Result(entry, Status.FAILED, f"{entry.name}: cannot read {target}: {exc}")
    if in_place:
        logger.info("%s: ok, cached", entry.name, extra={"action": "model_cached", "model": entry.name})
        return Result(
            entry,
            Status.CACHED,
            "verified in place",
            time.monotonic() - started,
            entry.sha256,
            target.stat().st_size,
        )
    if options.verify_only:
        what = "is not there" if not target.exists() else "does not match its sha256"
        return Result(entry, Status.FAILED, f"{entry.name}: {target} {what}")
    return _download(s3, bucket, entry, target, options, started)


def _download(s3: Any, bucket: str, entry: Entry, target: Path, options: Options, started: float) -> Result:
    """Bounded retries with exponential back-off; a refusal (missing, contradicted, denied) is final."""
    last = f"{entry.name}: not attempted"
    for attempt in range(1, options.attempts + 1):
        try:
            digest, size = fetch(s3, bucket, entry, target, options)
        except CorruptDownload as exc:
            last = str(exc)
        except SyncError as exc:
            return Result(entry, Status.FAILED, str(exc), time.monotonic() - started)
        except TRANSIENT_ERRORS as exc:
            last = f"{entry.name}: download interrupted ({type(exc).__name__}: {exc})"
        except (ClientError, OSError) as exc:
            return Result(
                entry, Status.FAILED, f"{entry.name}: {type(exc).__name__}: {exc}", time.monotonic() - started
            )
        else:
            return _downloaded(entry, digest, size, attempt, time.monotonic() - started)
        logger.warning(
            "%s (attempt %d of %d)", last, attempt, options.attempts, extra={"action": "model_retry"}
        )
        if attempt < options.attempts:
            options.sleep(options.retry_base_s * 2 ** (attempt - 1))
    return Result(entry, Status.FAILED, last, time.monotonic() - started)


def _downloaded(entry: Entry, digest: str, size: int, attempt: int, seconds: float) -> Result:
    if not entry.is_pinned:
        detail = f"not pinned: sha256 = {digest!r}, size_bytes = {size} (write these into the manifest)"
        logger.warning("%s: %s", entry.name, detail, extra={"action": "model_unpinned", "model": entry.name})
        return Result(entry, Status.UNPINNED, detail, seconds, digest, size)
    logger.info(
        "%s: downloaded and verified", entry.name, extra={"action": "model_downloaded", "model": entry.name}
    )
    return Result(entry, Status.DOWNLOADED, f"attempt {attempt}", seconds, digest, size)


def write_marker(marker: Path, results: Sequence[Result], models_dir: Path) -> None:
    """The JSON the backend's /readyz reads (`ok`, `verified_at`), written atomically and fsynced."""
    record = {
        "ok": True,
        "verified_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "models_dir": str(models_dir),
        "models": [
            {"file": r.entry.file, "folder": r.entry.folder, "sha256": r.sha256, "size_bytes": r.size_bytes}
            for r in results
        ],
    }
    atomic_write_text(marker, json.dumps(record, indent=2) + "\n")


@contextlib.contextmanager
def exclusive(models_dir: Path) -> Iterator[None]:
    """One sync at a time per models folder: the boot sync and the periodic refresh never write the same
    partial file, and one's clean-up never removes the other's download."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def sync(
    s3: Any,
    bucket: str,
    entries: Sequence[Entry],
    models_dir: Path,
    marker: Path | None,
    options: Options | None = None,
    jobs: int = DEFAULT_JOBS,
) -> list[Result]:
    """Every entry in place and verified, or the failures; the marker only when all are verified."""
    options = options or Options()
    entries = unique_entries(entries)
    if marker is not None and not options.keep_marker:
        marker.unlink(missing_ok=True)
    if not options.verify_only:
        remove_stale_partials(models_dir, entries)
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="model-sync") as pool:
        results = list(pool.map(lambda e: sync_entry(s3, bucket, e, models_dir, options), entries))
    for r in results:
        if not r.ok:
            logger.error("%s", r.detail, extra={"action": "model_failed", "model": r.entry.name})
    if marker is not None and results and all(r.ok for r in results):
        write_marker(marker, results, models_dir)
        logger.info(
            "all %d models verified; wrote %s", len(results), marker, extra={"action": "models_verified"}
        )
    return results


def report(results: Sequence[Result]) -> str:
    """The table printed at the end of a run."""
    width = max((len(r.entry.name) for r in results), default=5)
    lines = [f"{'model':<{width}}  {'status':<10}  {'seconds':>7}  detail"]
    for r in results:
        lines.append(f"{r.entry.name:<{width}}  {r.status:<10}  {r.seconds:7.1f}  {r.detail}")
    verified = sum(r.ok for r in results)
    failed = len(results) - verified
    lines.append(f"{verified} of {len(results)} verified" + (f", {failed} FAILED" if failed else ""))
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------------------------


def s3_client() -> Any:
    """boto3's S3 client; credentials, region and AWS_ENDPOINT_URL come from the environment."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"max_attempts": 3, "mode": "standard"}))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mlserver.model_sync", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--bucket", default=os.environ.get(BUCKET_ENV), help=f"models bucket (default ${BUCKET_ENV})"
    )
    p.add_argument("--models-dir", type=Path, required=True, help="ComfyUI's models folder")
    p.add_argument("--marker", type=Path, help="written (JSON) once every model is verified")
    p.add_argument("--models-manifest", type=Path, default=MODELS_MANIFEST)
    p.add_argument("--style-manifest", type=Path, default=None, help="default: loras/styles.toml")
    p.add_argument(
        "--added-key",
        default=ADDED_MANIFEST_KEY,
        help="the added models' manifest in the bucket ('' = base models and style LoRAs only)",
    )
    p.add_argument(
        "--folder",
        action="append",
        default=[],
        help="only the models of this folder (repeatable; default: every folder)",
    )
    p.add_argument("--verify-only", action="store_true", help="check what is on disk, download nothing")
    p.add_argument(
        "--refresh",
        action="store_true",
        help="periodic run beside a running ComfyUI: the marker stays while new files arrive",
    )
    p.add_argument(
        "--allow-unpinned",
        action="store_true",
        help="download entries without sha256 and print it (never ok)",
    )
    p.add_argument("--jobs", type=_positive_int, default=DEFAULT_JOBS, help="files downloaded at once")
    p.add_argument("--attempts", type=_positive_int, default=DEFAULT_ATTEMPTS, help="tries per file")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.bucket and not args.verify_only:
        logger.error("no bucket: pass --bucket or set %s", BUCKET_ENV)
        return 2
    options = Options(
        attempts=args.attempts,
        verify_only=args.verify_only,
        allow_unpinned=args.allow_unpinned,
        keep_marker=args.refresh,
    )
    # --verify-only checks a frozen set (SageMaker's model archive): the added models are not part of it.
    s3 = None if args.verify_only else s3_client()
    try:
        added = fetch_added(s3, args.bucket, args.added_key) if s3 and args.added_key else []
        entries = in_folders(load_entries(args.models_manifest, args.style_manifest, added), args.folder)
    except ManifestError as exc:
        logger.error("%s", exc)
        return 2
    with exclusive(args.models_dir):
        results = sync(s3, args.bucket or "", entries, args.models_dir, args.marker, options, args.jobs)
    sys.stdout.write(report(results) + "\n")
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
