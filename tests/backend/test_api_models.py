"""The model inventory and adding a model, on SQLite and PostgreSQL, against two emulators on loopback and
a moto S3 server: what each instance has, what pins it and uses it; an add by upload and by S3 key that
model sync then fetches and verifies; every refused input with its code, leaving nothing in the bucket."""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.db import make_engine, make_sessionmaker
from backend.models import Role, Template, TemplateVersion
from backend.users import ensure_designer, set_role
from contract.model_manifest import ADDED_MANIFEST_KEY, parse_added
from mlserver.model_sync import Options, fetch_added, sync
from tests.support.api import assert_error
from tests.support.aws import MotoServer
from tests.support.backend import DEMO_TOKEN, OTHER_TOKEN, Stack, start_stack
from tests.support.comfy import REAL_COMFYUI, EmulatorProcess, start_emulator, write_weights

pytestmark = pytest.mark.skipif(bool(REAL_COMFYUI), reason="places files in the emulators' models folders")

BUCKET = "studio-models"
ADMIN_TOKEN = "test-token-carol"


def safetensors(
    data: bytes, dtype: str = "U8", shape: list[int] | None = None, end: int | None = None
) -> bytes:
    """A safetensors file of one tensor (its header may lie: `end`, `shape`, `dtype`)."""
    tensor = {
        "dtype": dtype,
        "shape": shape or [len(data)],
        "data_offsets": [0, len(data) if end is None else end],
    }
    header = json.dumps({"weight": tensor}).encode()
    return struct.pack("<Q", len(header)) + header + data


@dataclass
class Models:
    stack: Stack
    s3: Any
    emulators: tuple[EmulatorProcess, EmulatorProcess]

    @property
    def names(self) -> list[str]:
        return [e.url.removeprefix("http://") for e in self.emulators]

    def inventory(self, client: httpx.Client) -> dict[str, dict[str, Any]]:
        r = client.get("/api/models")
        assert r.status_code == 200, r.text
        return {f["folder"]: {row["file"]: row for row in f["files"]} for f in r.json()["folders"]}

    def added_keys(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix="models/added/")
        return [o["Key"] for o in listed.get("Contents", [])]

    def pending_uploads(self) -> list[str]:
        return [u["Key"] for u in self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


async def _roles(stack: Stack) -> None:
    await set_role(stack.settings, "alice", Role.lead)
    await ensure_designer(stack.settings, "carol", ADMIN_TOKEN)
    await set_role(stack.settings, "carol", Role.admin)


@pytest.fixture
def models(db_url: str, tmp_path: Path, moto: MotoServer) -> Iterator[Models]:
    """Alice a lead, Bob a designer, Carol an admin; two emulators (text, sketch) and the models bucket."""
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    emus = (start_emulator(tmp_path / "e1"), start_emulator(tmp_path / "e2"))
    address = f"text={emus[0].url.removeprefix('http://')},sketch={emus[1].url.removeprefix('http://')}"
    try:
        with start_stack(
            db_url,
            tmp_path,
            None,
            comfy_ui_address=address,
            models_bucket=BUCKET,
            s3_endpoint_url=moto.endpoint_url,
            comfy_models_ttl_s=0.05,
            model_upload_max_bytes=64 * 1024,
        ) as stack:
            asyncio.run(_roles(stack))
            yield Models(stack, s3, emus)
    finally:
        for e in emus:
            e.kill()


async def _publish(stack: Stack, name: str, needs: dict[str, Any]) -> None:
    engine = make_engine(stack.settings)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            template = Template(
                id=name, name=name, title=name, description="", builtin=False, current_version=1
            )
            session.add(template)
            await session.flush()
            version = TemplateVersion(
                template_id=name,
                version=1,
                spec={},
                needs=needs,
                report={},
                lane="n:x",
                content_sha256="0" * 64,
            )
            session.add(version)
    finally:
        await engine.dispose()


def test_the_inventory_shows_each_instance_s_files_pins_and_users(models: Models) -> None:
    e1, e2 = models.emulators
    write_weights(e1.base_dir / "models" / "loras" / "only_here.safetensors")
    write_weights(e2.base_dir / "models" / "upscale_models" / "4x.safetensors")
    asyncio.run(
        _publish(models.stack, "upscaled", {"nodes": [], "models": {"upscale_models": ["4x.safetensors"]}})
    )
    with models.stack.client(OTHER_TOKEN) as bob:  # a designer may look
        inventory = models.inventory(bob)
    n1, n2 = models.names
    only_here = inventory["loras"]["only_here.safetensors"]
    assert only_here["instances"] == {n1: True, n2: False} and only_here["missing_on"] == [n2]
    assert only_here["pin"] is None
    upscaler = inventory["upscale_models"]["4x.safetensors"]
    assert upscaler["instances"] == {n1: False, n2: True} and upscaler["templates"] == ["upscaled"]
    checkpoint = inventory["checkpoints"]["interiordesignsuperm_v2.safetensors"]
    assert checkpoint["pin"]["licence"] == "creativeml-openrail-m" and checkpoint["pin"]["source"] == "base"
    assert inventory["controlnet"]["control_v11p_sd15_scribble.safetensors"]["pin"]["licence"] == "openrail"
    assert inventory["loras"]["indochine_v1.safetensors"]["styles"] == ["indochine"]
    assert inventory["loras"]["indochine_v1.safetensors"]["pin"]["source"] == "style"


def test_an_upload_is_pinned_synced_by_model_sync_and_then_listed_by_the_instance(
    models: Models, tmp_path: Path
) -> None:
    data = safetensors(bytes(range(256)) * 40)
    with models.stack.client(DEMO_TOKEN) as alice:
        r = alice.post(
            "/api/models/upload",
            params={"folder": "loras", "file": "brass.safetensors", "licence": "apache-2.0"},
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        added = r.json()
        assert added["sha256"] == hashlib.sha256(data).hexdigest() and added["size_bytes"] == len(data)
        assert added["s3_key"].startswith("models/added/loras/") and added["created"] is True
        manifest = parse_added(models.s3.get_object(Bucket=BUCKET, Key=ADDED_MANIFEST_KEY)["Body"].read())
        assert [(e.file, e.sha256, e.licence) for e in manifest] == [
            ("brass.safetensors", added["sha256"], "apache-2.0")
        ]

        # The ML host's sync: the added manifest from the bucket, each file fetched and verified.
        entries = fetch_added(models.s3, BUCKET, ADDED_MANIFEST_KEY)
        models_dir = models.emulators[0].base_dir / "models"
        results = sync(
            models.s3, BUCKET, entries, models_dir, tmp_path / "marker.json", Options(sleep=lambda s: None)
        )
        assert [r.status for r in results] == ["downloaded"]
        assert (models_dir / "loras" / "brass.safetensors").read_bytes() == data

        row = models.inventory(alice)["loras"]["brass.safetensors"]
        assert row["instances"] == {models.names[0]: True, models.names[1]: False}
        assert row["pin"]["source"] == "added" and row["pin"]["sha256"] == added["sha256"]

        again = alice.post(
            "/api/models/upload",
            params={"folder": "loras", "file": "brass.safetensors", "licence": "apache-2.0"},
            content=data,
        )
        assert again.status_code == 200 and again.json()["created"] is False
    assert len(models.added_keys()) == 1 and models.pending_uploads() == []


def test_a_model_added_by_s3_key_is_pinned_where_it_is(models: Models) -> None:
    data = safetensors(bytes(4096), dtype="F16", shape=[2048])
    key = "models/upscale_models/2x.safetensors"
    models.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    with models.stack.client(DEMO_TOKEN) as alice:
        body = {"folder": "upscale_models", "file": "2x.safetensors", "s3_key": key, "licence": "mit"}
        r = alice.post("/api/models", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["s3_key"] == key
    entries = fetch_added(models.s3, BUCKET, ADDED_MANIFEST_KEY)
    assert [(e.folder, e.file, e.s3_key, e.size_bytes) for e in entries] == [
        ("upscale_models", "2x.safetensors", key, len(data))
    ]


def _upload(c: httpx.Client, data: bytes, **params: Any) -> httpx.Response:
    query = {"folder": "loras", "file": "x.safetensors", "licence": "openrail", **params}
    return c.post("/api/models/upload", params=query, content=data)


def test_every_bad_input_is_refused_with_its_code_and_leaves_nothing(models: Models) -> None:
    good = safetensors(bytes(16))
    models.s3.put_object(Bucket=BUCKET, Key="renders/x.safetensors", Body=good)
    with (
        models.stack.client(DEMO_TOKEN) as alice,
        models.stack.client(OTHER_TOKEN) as bob,
        models.stack.client(ADMIN_TOKEN) as carol,
    ):
        assert _upload(alice, good, file="taken.safetensors").status_code == 201
        past_end = safetensors(bytes(10), end=100, shape=[100])
        pickle = b"\x80\x02}q\x00."
        other, bad_shape = safetensors(bytes(32)), safetensors(bytes(16), shape=[3])
        lead_pickle = {"file": "old.ckpt", "allow_pickle": "true"}
        taken = {"file": "taken.safetensors"}
        base = {"folder": "checkpoints", "file": "interiordesignsuperm_v2.safetensors"}

        def by_key(key: str) -> httpx.Response:
            body = {"folder": "loras", "file": "x.safetensors", "s3_key": key, "licence": "mit"}
            return alice.post("/api/models", json=body)

        cases: list[tuple[str, httpx.Response, int, str]] = [
            ("a designer", _upload(bob, good), 403, "forbidden_role"),
            ("not safetensors", _upload(alice, b"PK\x03\x04" + bytes(200)), 422, "not_safetensors"),
            ("cut in its header", _upload(alice, good[:20]), 422, "truncated_header"),
            ("tensor past the end", _upload(alice, past_end), 422, "tensors_outside_file"),
            ("unknown dtype", _upload(alice, safetensors(bytes(16), dtype="Q7")), 422, "unknown_dtype"),
            ("shape and bytes differ", _upload(alice, bad_shape), 422, "bad_tensor_layout"),
            ("pickle", _upload(alice, pickle, file="old.ckpt"), 422, "pickle_refused"),
            ("pickle allowed by a lead", _upload(alice, pickle, **lead_pickle), 403, "forbidden_role"),
            ("unknown folder", _upload(alice, good, folder="nowhere"), 422, "unknown_folder"),
            ("a path", _upload(alice, good, file="../loras/x.safetensors"), 422, "invalid_file_name"),
            ("another format", _upload(alice, good, file="x.gguf"), 422, "unsupported_model_format"),
            ("same name, other bytes", _upload(alice, other, **taken), 409, "model_conflict"),
            ("base model's name", _upload(alice, good, **base), 409, "model_conflict"),
            ("too large", _upload(alice, safetensors(bytes(70 * 1024))), 413, "model_too_large"),
            ("no licence", _upload(alice, good, licence=" "), 422, "invalid_input"),
            ("key outside models/", by_key("renders/x.safetensors"), 422, "s3_key_outside_models"),
            ("no such object", by_key("models/none.safetensors"), 422, "s3_object_missing"),
        ]  # fmt: skip
        failures = []
        for what, r, status, code in cases:
            try:
                assert_error(r, status, code)
            except AssertionError as exc:
                failures.append(f"{what}: {exc}")
        assert not failures, failures
        r = _upload(carol, b"\x80\x02}q\x00.", file="old.ckpt", allow_pickle="true")
        assert r.status_code == 201, r.text
    assert sorted(k.rsplit("/", 1)[-1] for k in models.added_keys()) == ["old.ckpt", "taken.safetensors"]
    assert models.pending_uploads() == []
    files = {e.file for e in fetch_added(models.s3, BUCKET, ADDED_MANIFEST_KEY)}
    assert files == {"old.ckpt", "taken.safetensors"}


def test_adding_without_a_models_bucket_is_refused_but_the_inventory_shows(api_stack: Stack) -> None:
    asyncio.run(set_role(api_stack.settings, "alice", Role.lead))
    with api_stack.client(DEMO_TOKEN) as alice:
        r = alice.get("/api/models")
        assert r.status_code == 200 and r.json()["can_add"] is False
        assert_error(_upload(alice, safetensors(bytes(4))), 503, "models_bucket_unset")
