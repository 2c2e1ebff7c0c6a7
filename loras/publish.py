"""Ship a trained LoRA: validate it, upload it to the models bucket, point the manifest at it; or roll a
style back to the version it had before.

    python -m loras.publish publish indochine output/indochine_v2.safetensors --version v2 --bucket B
    python -m loras.publish rollback indochine [--to v1] --bucket B

Publishing uploads to `s3://<bucket>/loras/<style>/<version>/<style>_<version>.safetensors` with the
file's SHA-256 as object metadata (`sha256`) and AES256 server-side encryption, refuses to replace a
different object at that key (a version is immutable; re-publishing the same bytes is a no-op), then
rewrites the style in `styles.toml`: the new file, sha256, size, version and key, the old version first
in `previous`. Rollback makes the newest (or `--to`) previous version current again after checking its
object is still in the bucket with the same checksum. The ML host's model sync reads the manifest and
fetches what it names; the manifest change is committed like any other.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from contract.files import sha256_file
from contract.styles import (
    Manifest,
    ManifestError,
    PreviousVersion,
    Style,
    load_manifest,
    with_style,
)
from loras.cli import configure_logging, description, write_out
from loras.manifest_writer import save_manifest
from loras.validate import validate_lora

logger = logging.getLogger(__name__)

VERSION_RE = re.compile(r"^v[0-9]+[a-z0-9._-]{0,30}$")
BUCKET_ENV = "MODELS_BUCKET"
SSE = "AES256"


class PublishError(RuntimeError):
    """The LoRA, the bucket or the manifest does not allow this publish or rollback."""


@dataclass(frozen=True)
class Artifact:
    """A LoRA file as it will be published."""

    path: Path
    style_id: str
    version: str
    file_name: str
    sha256: str
    size_bytes: int

    @property
    def s3_key(self) -> str:
        return s3_key(self.style_id, self.version, self.file_name)


def s3_key(style_id: str, version: str, file_name: str) -> str:
    return f"loras/{style_id}/{version}/{file_name}"


def default_file_name(style_id: str, version: str) -> str:
    """`indochine_v2.safetensors`: versions live side by side in ComfyUI's loras folder."""
    return f"{style_id}_{version}.safetensors"


def make_s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client (credentials, region and AWS_ENDPOINT_URL from the environment as usual)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url) if endpoint_url else boto3.client("s3")


# --- S3 ---------------------------------------------------------------------------------------------------


def head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's HEAD response, or None when there is no such object."""
    from botocore.exceptions import ClientError

    try:
        return dict(s3.head_object(Bucket=bucket, Key=key))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _object_sha256(obj: dict[str, Any]) -> str:
    return str(obj.get("Metadata", {}).get("sha256", ""))


def upload(s3: Any, bucket: str, artifact: Artifact) -> bool:
    """Upload unless the same bytes are already there; True when something was uploaded."""
    key = artifact.s3_key
    existing = head(s3, bucket, key)
    if existing is not None:
        if _object_sha256(existing) == artifact.sha256 and existing["ContentLength"] == artifact.size_bytes:
            logger.info("s3://%s/%s already holds this file; not uploading it again", bucket, key)
            return False
        raise PublishError(
            f"s3://{bucket}/{key} already holds a different file (sha256 {_object_sha256(existing) or '?'}); "
            "a published version never changes: publish under a new --version"
        )
    extra = {"Metadata": {"sha256": artifact.sha256}, "ServerSideEncryption": SSE}
    s3.upload_file(
        str(artifact.path), bucket, key, ExtraArgs={**extra, "ContentType": "application/octet-stream"}
    )
    verify_object(s3, bucket, key, artifact.sha256, artifact.size_bytes)
    logger.info("uploaded", extra={"action": "lora_uploaded", "bucket": bucket, "key": key})
    return True


def verify_object(s3: Any, bucket: str, key: str, sha256: str, size_bytes: int) -> None:
    """The object exists with this size and sha256 metadata, else PublishError."""
    obj = head(s3, bucket, key)
    if obj is None:
        raise PublishError(f"s3://{bucket}/{key} does not exist")
    if obj["ContentLength"] != size_bytes or _object_sha256(obj) != sha256:
        raise PublishError(
            f"s3://{bucket}/{key} is {obj['ContentLength']} bytes with sha256 {_object_sha256(obj) or '?'}, "
            f"expected {size_bytes} bytes with sha256 {sha256}"
        )


# --- manifest ---------------------------------------------------------------------------------------------


def _as_previous(style: Style) -> PreviousVersion:
    return PreviousVersion(style.version, style.lora_file, style.sha256, style.size_bytes, style.s3_key)


def published_style(style: Style, artifact: Artifact) -> Style:
    """The style pointing at `artifact`, its current version (if it was published) first in `previous`."""
    if style.version == artifact.version and style.sha256:
        if style.sha256 != artifact.sha256:
            raise PublishError(f"{style.id} {style.version} is already published with sha256 {style.sha256}")
        return style
    if any(p.version == artifact.version for p in style.previous):
        raise PublishError(f"{style.id} already had a version {artifact.version}; choose a new one")
    previous = style.previous
    if style.sha256 and style.version != artifact.version:
        previous = (_as_previous(style), *previous)
    return replace(
        style,
        lora_file=artifact.file_name,
        sha256=artifact.sha256,
        size_bytes=artifact.size_bytes,
        version=artifact.version,
        s3_key=artifact.s3_key,
        previous=previous,
    )


def rolled_back_style(style: Style, to_version: str | None = None) -> tuple[Style, PreviousVersion]:
    """The style with a previous version current again; newer ones, and the current one, are dropped."""
    if not style.previous:
        raise PublishError(f"{style.id} has no previous version to roll back to")
    versions = [p.version for p in style.previous]
    if to_version is not None and to_version not in versions:
        raise PublishError(f"{style.id} has no previous version {to_version} (it has {', '.join(versions)})")
    index = versions.index(to_version) if to_version is not None else 0
    target = style.previous[index]
    rolled = replace(
        style,
        lora_file=target.lora_file,
        sha256=target.sha256,
        size_bytes=target.size_bytes,
        version=target.version,
        s3_key=target.s3_key,
        previous=style.previous[index + 1 :],
    )
    return rolled, target


# --- the two operations -----------------------------------------------------------------------------------


def prepare_artifact(path: Path, style_id: str, version: str, file_name: str | None = None) -> Artifact:
    """Validate the LoRA (any error stops the publish) and compute what will be uploaded."""
    if not VERSION_RE.match(version):
        raise PublishError(f"version {version!r} must look like v2, v2.1 or v3-beta")
    report = validate_lora(path)
    for finding in report.warnings:
        logger.warning("%s: %s", finding.code, finding.message)
    if not report.ok:
        raise PublishError(f"{path} failed validation:\n{report.summary()}")
    name = file_name or default_file_name(style_id, version)
    if "/" in name or not name.endswith(".safetensors"):
        raise PublishError(f"file name {name!r} must be a bare *.safetensors name")
    return Artifact(path, style_id, version, name, sha256_file(path), path.stat().st_size)


def publish(
    manifest: Manifest, style_id: str, artifact: Artifact, s3: Any, bucket: str, dry_run: bool = False
) -> Manifest:
    """Upload the artifact and save the manifest pointing at it; returns the new manifest."""
    style = manifest.get(style_id)
    if not style.has_lora:
        raise PublishError(
            f"style {style_id!r} is defined without a LoRA (lora_file = ''); set lora_file first"
        )
    updated = with_style(manifest, published_style(style, artifact))
    if dry_run:
        logger.info("dry run: would upload %s to s3://%s/%s", artifact.path, bucket, artifact.s3_key)
        return updated
    upload(s3, bucket, artifact)
    save_manifest(updated)
    logger.info(
        "published",
        extra={
            "action": "lora_published",
            "style": style_id,
            "version": artifact.version,
            "key": artifact.s3_key,
        },
    )
    return updated


def rollback(
    manifest: Manifest, style_id: str, to_version: str | None, s3: Any | None, bucket: str | None
) -> Manifest:
    """Make a previous version current (checked in the bucket when `s3` is given) and save the manifest."""
    style = manifest.get(style_id)
    rolled, target = rolled_back_style(style, to_version)
    if s3 is not None and bucket:
        verify_object(s3, bucket, target.s3_key, target.sha256, target.size_bytes)
    updated = with_style(manifest, rolled)
    save_manifest(updated)
    logger.info(
        "rolled back",
        extra={"action": "lora_rolled_back", "style": style_id, "from": style.version, "to": target.version},
    )
    return updated


# --- command line -----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loras.publish", description=description(__doc__))
    p.add_argument("--manifest", type=Path, help="style manifest (default loras/styles.toml)")
    p.add_argument(
        "--bucket", default=os.environ.get(BUCKET_ENV), help=f"models bucket (default ${BUCKET_ENV})"
    )
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS, or $AWS_ENDPOINT_URL)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="validate, upload and point the manifest at a new version")
    pub.add_argument("style", help="style id in the manifest")
    pub.add_argument("file", type=Path, help="the trained LoRA (.safetensors)")
    pub.add_argument("--version", required=True, help="new version, e.g. v2")
    pub.add_argument("--file-name", help="name under models/loras (default <style>_<version>.safetensors)")
    pub.add_argument("--dry-run", action="store_true", help="validate and show what would change")
    back = sub.add_parser("rollback", help="make a previous version current again")
    back.add_argument("style", help="style id in the manifest")
    back.add_argument("--to", dest="to_version", help="version to restore (default: the newest previous one)")
    back.add_argument("--no-verify", action="store_true", help="do not check the object in the bucket")
    return p


def _run(args: argparse.Namespace) -> Manifest:
    manifest = load_manifest(args.manifest)
    if args.command == "publish":
        if not args.bucket:
            raise PublishError(f"no bucket: pass --bucket or set ${BUCKET_ENV}")
        artifact = prepare_artifact(args.file, args.style, args.version, args.file_name)
        s3 = None if args.dry_run else make_s3_client(args.endpoint_url)
        return publish(manifest, args.style, artifact, s3, args.bucket, args.dry_run)
    if not args.no_verify and not args.bucket:
        raise PublishError("no bucket to verify the old version in: pass --bucket (or --no-verify)")
    s3 = None if args.no_verify else make_s3_client(args.endpoint_url)
    return rollback(manifest, args.style, args.to_version, s3, args.bucket)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.verbose)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        manifest = _run(args)
    except (PublishError, ManifestError, OSError, BotoCoreError, ClientError) as exc:
        logger.error("%s", exc)
        return 1
    style = manifest.get(args.style)
    note = " (dry run: nothing uploaded or saved)" if getattr(args, "dry_run", False) else ""
    write_out(f"{style.id}: {style.version} {style.lora_file} sha256 {style.sha256} ({style.s3_key}){note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
