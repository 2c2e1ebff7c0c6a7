"""publish.py against a moto S3 server on loopback: upload, manifest update, immutability, rollback."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from contract.styles import load_manifest
from loras.publish import PublishError, main, prepare_artifact, publish, rollback, upload
from tests.loras.lora_factory import lora_tensors, write_lora
from tests.support.aws import MotoServer

BUCKET = "studio-models"


@pytest.fixture
def s3(moto: MotoServer):
    client = moto.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def other_lora(tmp_path: Path) -> Path:
    """A second well-formed LoRA with different weights (a retrained version)."""
    return write_lora(tmp_path / "retrained.safetensors", lora_tensors(seed=7))


def keys(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def publish_file(manifest_path: Path, s3, path: Path, version: str):
    artifact = prepare_artifact(path, "indochine", version)
    return publish(load_manifest(manifest_path), "indochine", artifact, s3, BUCKET)


def test_publish_uploads_with_checksum_and_encryption_and_updates_the_manifest(
    s3, good_lora: Path, manifest_copy: Path
) -> None:
    publish_file(manifest_copy, s3, good_lora, "v1")

    key = "loras/indochine/v1/indochine_v1.safetensors"
    digest = hashlib.sha256(good_lora.read_bytes()).hexdigest()
    obj = s3.head_object(Bucket=BUCKET, Key=key)
    assert obj["Metadata"] == {"sha256": digest}
    assert obj["ServerSideEncryption"] == "AES256"
    assert obj["ContentLength"] == good_lora.stat().st_size
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == good_lora.read_bytes()
    style = load_manifest(manifest_copy).get("indochine")
    assert (style.version, style.lora_file, style.sha256, style.s3_key) == (
        "v1",
        "indochine_v1.safetensors",
        digest,
        key,
    )
    assert style.size_bytes == good_lora.stat().st_size
    assert style.previous == ()  # the unpublished v1 placeholder had nothing to roll back to
    assert load_manifest(manifest_copy).get("minimalist") == load_manifest().get("minimalist")


def test_a_new_version_keeps_the_old_one_as_previous(
    s3, good_lora: Path, other_lora: Path, manifest_copy: Path
) -> None:
    publish_file(manifest_copy, s3, good_lora, "v1")
    publish_file(manifest_copy, s3, other_lora, "v2")

    style = load_manifest(manifest_copy).get("indochine")
    assert (style.version, style.lora_file) == ("v2", "indochine_v2.safetensors")
    assert [p.version for p in style.previous] == ["v1"]
    assert style.previous[0].sha256 == hashlib.sha256(good_lora.read_bytes()).hexdigest()
    assert sorted(keys(s3)) == [
        "loras/indochine/v1/indochine_v1.safetensors",
        "loras/indochine/v2/indochine_v2.safetensors",
    ]


def test_publishing_the_same_file_again_is_a_no_op(s3, good_lora: Path, manifest_copy: Path) -> None:
    publish_file(manifest_copy, s3, good_lora, "v1")
    before = manifest_copy.read_text()
    assert upload(s3, BUCKET, prepare_artifact(good_lora, "indochine", "v1")) is False
    publish_file(manifest_copy, s3, good_lora, "v1")
    assert manifest_copy.read_text() == before


def test_a_different_file_never_replaces_a_published_version(
    s3, good_lora: Path, other_lora: Path, manifest_copy: Path
) -> None:
    publish_file(manifest_copy, s3, good_lora, "v1")
    before = manifest_copy.read_text()
    with pytest.raises(PublishError, match="already holds a different file"):
        upload(s3, BUCKET, prepare_artifact(other_lora, "indochine", "v1"))
    with pytest.raises(PublishError, match="already published"):
        publish_file(manifest_copy, s3, other_lora, "v1")
    assert manifest_copy.read_text() == before
    body = s3.get_object(Bucket=BUCKET, Key="loras/indochine/v1/indochine_v1.safetensors")["Body"].read()
    assert body == good_lora.read_bytes()


def test_an_invalid_lora_is_not_uploaded(s3, good_lora: Path, manifest_copy: Path) -> None:
    good_lora.write_bytes(good_lora.read_bytes()[:-100])
    before = manifest_copy.read_text()
    with pytest.raises(PublishError, match="failed validation"):
        publish_file(manifest_copy, s3, good_lora, "v2")
    assert keys(s3) == []
    assert manifest_copy.read_text() == before


def test_a_style_without_lora_cannot_be_published(s3, good_lora: Path, manifest_copy: Path) -> None:
    artifact = prepare_artifact(good_lora, "none", "v1")
    with pytest.raises(PublishError, match="without a LoRA"):
        publish(load_manifest(manifest_copy), "none", artifact, s3, BUCKET)


def test_rollback_restores_the_previous_version(
    s3, good_lora: Path, other_lora: Path, manifest_copy: Path
) -> None:
    publish_file(manifest_copy, s3, good_lora, "v1")
    v1 = load_manifest(manifest_copy).get("indochine")
    publish_file(manifest_copy, s3, other_lora, "v2")

    rollback(load_manifest(manifest_copy), "indochine", None, s3, BUCKET)

    assert load_manifest(manifest_copy).get("indochine") == v1
    with pytest.raises(PublishError, match="no previous version"):
        rollback(load_manifest(manifest_copy), "indochine", None, s3, BUCKET)


def test_rollback_to_a_named_version_drops_the_newer_ones(
    s3, good_lora: Path, tmp_path: Path, manifest_copy: Path
) -> None:
    for seed, version in ((1, "v1"), (2, "v2"), (3, "v3")):
        publish_file(
            manifest_copy,
            s3,
            write_lora(tmp_path / f"{version}.safetensors", lora_tensors(seed=seed)),
            version,
        )
    with pytest.raises(PublishError, match="no previous version v9"):
        rollback(load_manifest(manifest_copy), "indochine", "v9", s3, BUCKET)

    rollback(load_manifest(manifest_copy), "indochine", "v1", s3, BUCKET)

    style = load_manifest(manifest_copy).get("indochine")
    assert (style.version, style.previous) == ("v1", ())


def test_rollback_refuses_when_the_old_object_is_gone(
    s3, good_lora: Path, other_lora: Path, manifest_copy: Path
) -> None:
    publish_file(manifest_copy, s3, good_lora, "v1")
    publish_file(manifest_copy, s3, other_lora, "v2")
    s3.delete_object(Bucket=BUCKET, Key="loras/indochine/v1/indochine_v1.safetensors")
    before = manifest_copy.read_text()
    with pytest.raises(PublishError, match="does not exist"):
        rollback(load_manifest(manifest_copy), "indochine", None, s3, BUCKET)
    assert manifest_copy.read_text() == before


def test_cli_publish_and_rollback(s3, good_lora: Path, other_lora: Path, manifest_copy: Path, capsys) -> None:
    common = ["--manifest", str(manifest_copy), "--bucket", BUCKET]
    assert main([*common, "publish", "indochine", str(good_lora), "--version", "v1"]) == 0
    assert main([*common, "publish", "indochine", str(other_lora), "--version", "v2", "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert load_manifest(manifest_copy).get("indochine").version == "v1"
    assert main([*common, "publish", "indochine", str(other_lora), "--version", "v2"]) == 0
    assert main([*common, "publish", "indochine", str(other_lora), "--version", "v1"]) == 1  # v1 is taken
    assert main([*common, "rollback", "indochine"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("indochine: v1 indochine_v1.safetensors")
    assert load_manifest(manifest_copy).get("indochine").version == "v1"


def test_cli_needs_a_bucket_and_a_sane_version(good_lora: Path, manifest_copy: Path, monkeypatch) -> None:
    monkeypatch.delenv("MODELS_BUCKET", raising=False)
    args = ["--manifest", str(manifest_copy), "publish", "indochine", str(good_lora)]
    assert main([*args, "--version", "v2"]) == 1
    assert main(["--bucket", BUCKET, *args, "--version", "latest", "--dry-run"]) == 1
