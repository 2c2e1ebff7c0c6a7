"""Where uploads and renders live: `LocalStorage` (a data folder, the default) and `S3Storage` (boto3).

Keys are content-addressed (`images/ab/<sha256>.png`), so a retried save is harmless. Blocking I/O runs
in a thread. Local files are streamed by the API; S3 objects are served as short-lived presigned URLs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from backend.config import Settings

KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_./")


class StorageError(Exception):
    """The storage backend failed (disk full, S3 error...): the caller retries or fails the job."""


def content_key(kind: str, data: bytes, ext: str) -> tuple[str, str]:
    """(`kind/ab/<sha256>.ext`, sha256) for `data`."""
    digest = hashlib.sha256(data).hexdigest()
    return f"{kind}/{digest[:2]}/{digest}.{ext}", digest


def check_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key or not set(key) <= KEY_CHARS:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    async def save(self, key: str, data: bytes, content_type: str) -> None: ...

    async def load(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...

    def local_path(self, key: str) -> Path | None:
        """The file to stream, for local storage; None where `presigned_url` applies."""

    async def presigned_url(self, key: str, filename: str, download: bool) -> str: ...

    async def check(self) -> None:
        """Raise StorageError when the backend cannot be used."""


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc.strerror or exc}") from exc

    async def save(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, key, data)

    async def load(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc.strerror or exc}") from exc

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def presigned_url(self, key: str, filename: str, download: bool) -> str:
        raise StorageError("local storage has no presigned URLs")

    async def check(self) -> None:
        def _probe() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StorageError(f"{self.root} is not writable")

        await asyncio.to_thread(_probe)


def s3_client(settings: Settings, read_timeout_s: float = 30) -> Any:
    """boto3's S3 client as the studio configures it (outputs and the models bucket alike): path-style
    on a custom endpoint (moto, MinIO), standard retries, a short connect timeout."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
            retries={"max_attempts": 4, "mode": "standard"},
            connect_timeout=5,
            read_timeout=read_timeout_s,
        ),
    )


class S3Storage:
    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        if not settings.s3_bucket:
            raise ValueError("S3_BUCKET must be set when STORAGE_BACKEND=s3")
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.ttl_s = settings.s3_presign_ttl_s
        self.client = client or s3_client(settings)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def save(self, key: str, data: bytes, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await asyncio.to_thread(
                self.client.put_object,
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType=content_type,
                ServerSideEncryption="AES256",
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot write s3://{self.bucket}/{self._key(key)}: {exc}") from exc

    async def load(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            obj = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=self._key(key))
            return await asyncio.to_thread(obj["Body"].read)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot read s3://{self.bucket}/{self._key(key)}: {exc}") from exc

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(str(exc)) from exc
        return True

    def local_path(self, key: str) -> Path | None:
        return None

    async def presigned_url(self, key: str, filename: str, download: bool) -> str:
        disposition = f'{"attachment" if download else "inline"}; filename="{filename}"'
        url: str = await asyncio.to_thread(
            self.client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key), "ResponseContentDisposition": disposition},
            ExpiresIn=self.ttl_s,
        )
        return url

    async def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"bucket {self.bucket} unreachable: {exc}") from exc


def make_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        return S3Storage(settings)
    return LocalStorage(settings.data_dir)
