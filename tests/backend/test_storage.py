"""Storage backends: LocalStorage on disk and S3Storage against a moto server on loopback."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from backend.config import Settings
from backend.storage import LocalStorage, S3Storage, StorageError, check_key, content_key
from tests.support.aws import MotoServer


async def test_local_storage_round_trip_and_atomic_writes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    key, digest = content_key("images", b"png bytes", "png")
    assert key == f"images/{digest[:2]}/{digest}.png"
    await storage.save(key, b"png bytes", "image/png")
    assert await storage.load(key) == b"png bytes"
    assert await storage.exists(key)
    assert not list((tmp_path / "data").rglob(".tmp-*"))
    await storage.check()


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "UPPER", "sp ace", ""])
def test_storage_keys_cannot_escape(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


async def test_local_storage_failure_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the folder should be")
    storage = LocalStorage(blocker)
    with pytest.raises(StorageError):
        await storage.save("images/ab/x.png", b"x", "image/png")


def s3_settings(moto: MotoServer, bucket: str = "studio-renders") -> Settings:
    moto.client("s3").create_bucket(Bucket=bucket)
    return Settings(
        _env_file=None,
        storage_backend="s3",
        s3_bucket=bucket,
        s3_prefix="renders",  # type: ignore[call-arg]
        s3_endpoint_url=moto.endpoint_url,
        s3_presign_ttl_s=60,
    )


async def test_s3_storage_round_trip_with_encryption_and_presigned_urls(moto: MotoServer) -> None:
    storage = S3Storage(s3_settings(moto))
    await storage.check()
    await storage.save("images/ab/abc.png", b"\x89PNG data", "image/png")
    head = moto.client("s3").head_object(Bucket="studio-renders", Key="renders/images/ab/abc.png")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "image/png"
    assert await storage.load("images/ab/abc.png") == b"\x89PNG data"
    assert await storage.exists("images/ab/abc.png")
    assert not await storage.exists("images/ab/nope.png")
    url = await storage.presigned_url("images/ab/abc.png", "render.png", download=True)
    assert "X-Amz-Expires=60" in url and "X-Amz-Signature=" in url
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == b"\x89PNG data"
    assert r.headers["content-disposition"] == 'attachment; filename="render.png"'


async def test_s3_errors_are_storage_errors(moto: MotoServer) -> None:
    settings = s3_settings(moto)
    storage = S3Storage(settings.model_copy(update={"s3_bucket": "no-such-bucket"}))
    with pytest.raises(StorageError):
        await storage.save("images/ab/abc.png", b"x", "image/png")
    with pytest.raises(StorageError):
        await storage.check()
    with pytest.raises(StorageError):
        await S3Storage(settings).load("images/ab/missing.png")
