"""The models bucket as the backend uses it: read an object as a stream, write an upload as it arrives
(S3 multipart: parts of PART_BYTES, never the whole file in memory), write the added manifest.

boto3 is blocking: every call runs in a thread. An upload that fails a check is aborted, so a refused
model leaves no object behind (the bucket's lifecycle rule aborts what a crashed process left).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from backend.config import Settings
from backend.storage import s3_client

PART_BYTES = 8 * 1024 * 1024  # S3's smallest part is 5 MiB (the last may be smaller)
READ_CHUNK_BYTES = 1024 * 1024
NOT_FOUND_CODES = ("404", "NoSuchKey", "NotFound")


class ModelStoreError(Exception):
    """The bucket could not be read or written (the message says what)."""


class ObjectMissing(ModelStoreError):
    """No object at that key."""


class ModelStore:
    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.bucket = settings.models_bucket
        self.client = client or s3_client(settings, read_timeout_s=60)  # model files: larger reads

    async def _call(self, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(getattr(self.client, method), Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in NOT_FOUND_CODES:
                raise ObjectMissing(f"s3://{self.bucket}/{kwargs.get('Key', '')} does not exist") from exc
            raise ModelStoreError(f"s3://{self.bucket}: {method} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise ModelStoreError(f"s3://{self.bucket}: {method} failed: {exc}") from exc

    async def size(self, key: str) -> int:
        head = await self._call("head_object", Key=key)
        return int(head["ContentLength"])

    async def read(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes, chunk by chunk."""
        from botocore.exceptions import BotoCoreError

        body = (await self._call("get_object", Key=key))["Body"]
        chunks = body.iter_chunks(READ_CHUNK_BYTES)
        try:
            while chunk := await asyncio.to_thread(next, chunks, b""):
                yield chunk
        except BotoCoreError as exc:
            raise ModelStoreError(f"s3://{self.bucket}/{key}: read failed: {exc}") from exc
        finally:
            body.close()

    async def put_text(self, key: str, text: str, content_type: str = "application/json") -> None:
        await self._call(
            "put_object",
            Key=key,
            Body=text.encode(),
            ContentType=content_type,
            ServerSideEncryption="AES256",
        )

    async def delete(self, key: str) -> None:
        await self._call("delete_object", Key=key)

    def writer(self, key: str) -> MultipartWriter:
        return MultipartWriter(self, key)


class MultipartWriter:
    """One object written part by part as bytes arrive; `complete` makes it exist, `abort` forgets it."""

    def __init__(self, store: ModelStore, key: str) -> None:
        self.store = store
        self.key = key
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._buffer = bytearray()

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= PART_BYTES:
            part, self._buffer = bytes(self._buffer[:PART_BYTES]), self._buffer[PART_BYTES:]
            await self._send(part)

    async def _send(self, part: bytes) -> None:
        if self._upload_id is None:
            started = await self.store._call(
                "create_multipart_upload", Key=self.key, ServerSideEncryption="AES256"
            )
            self._upload_id = str(started["UploadId"])
        number = len(self._parts) + 1
        answer = await self.store._call(
            "upload_part", Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=part
        )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def complete(self) -> None:
        """The object exists (a file smaller than one part is written with one PUT). No sha256 metadata:
        a multipart upload names its metadata before the first byte; the added manifest pins the hash."""
        if self._upload_id is None:
            await self.store._call(
                "put_object", Key=self.key, Body=bytes(self._buffer), ServerSideEncryption="AES256"
            )
            return
        if self._buffer:
            await self._send(bytes(self._buffer))
            self._buffer = bytearray()
        await self.store._call(
            "complete_multipart_upload",
            Key=self.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    async def abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is not None:
            with contextlib.suppress(ModelStoreError):
                await self.store._call("abort_multipart_upload", Key=self.key, UploadId=self._upload_id)
            self._upload_id = None
