"""The Models page through Streamlit's AppTest, against a real backend, an emulator and a moto bucket on
loopback: the matrix with a missing file highlighted, and a lead adding a model by S3 key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.models import Role
from backend.users import set_role
from tests.backend.test_api_models import BUCKET, safetensors
from tests.frontend.conftest import signed_in
from tests.support.api import assert_error
from tests.support.aws import MotoServer
from tests.support.backend import DEMO_TOKEN, Stack, start_stack
from tests.support.comfy import NEEDS_EMULATOR, REAL_COMFYUI, EmulatorProcess, start_emulator, write_weights
from tests.support.db import sqlite_db

pytestmark = pytest.mark.skipif(bool(REAL_COMFYUI), reason=NEEDS_EMULATOR)


@pytest.fixture
def page_stack(
    tmp_path: Path, sqlite_template: Path, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Stack, EmulatorProcess, object]]:
    from frontend.config import get_frontend_settings

    s3 = moto.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    emu = start_emulator(tmp_path / "emu")
    try:
        with start_stack(
            sqlite_db(sqlite_template, tmp_path),
            tmp_path,
            emu.url,
            models_bucket=BUCKET,
            s3_endpoint_url=moto.endpoint_url,
            comfy_models_ttl_s=0.05,
        ) as stack:
            asyncio.run(set_role(stack.settings, "alice", Role.lead))
            monkeypatch.setenv("BACKEND_URL", stack.url)
            get_frontend_settings.cache_clear()
            yield stack, emu, s3
    finally:
        get_frontend_settings.cache_clear()
        emu.kill()


def test_the_models_page_highlights_missing_files_and_a_lead_adds_one_by_key(
    page_stack: tuple[Stack, EmulatorProcess, object],
) -> None:
    _stack, emu, s3 = page_stack
    write_weights(emu.base_dir / "models" / "loras" / "on_disk.safetensors")
    at = signed_in()
    at.switch_page("views/models.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    instance = emu.url.removeprefix("http://")
    on_disk = table[table["file"] == "on_disk.safetensors"].iloc[0]
    assert on_disk[instance] == "✓" and on_disk["sha256"] == "no pin"
    checkpoint = table[table["file"] == "interiordesignsuperm_v2.safetensors"].iloc[0]
    assert checkpoint["licence"] == "creativeml-openrail-m"
    indochine = table[table["file"] == "indochine_v1.safetensors"].iloc[0]
    assert indochine["styles"] == "indochine"
    if indochine[instance] == "✗ missing":
        assert any("missing on an instance" in w.value for w in at.warning)

    s3.put_object(Bucket=BUCKET, Key="models/loras/teak.safetensors", Body=safetensors(bytes(64)))  # type: ignore[attr-defined]
    at.radio(key="w_model_source").set_value("A key in the models bucket")
    at.selectbox(key="w_model_folder").select("loras")
    at.text_input(key="w_model_file").input("teak.safetensors")
    at.text_input(key="w_model_licence").input("apache-2.0")
    at.text_input(key="w_model_s3_key").input("models/loras/teak.safetensors")
    at.button(key="FormSubmitter:add_model-Add the model").click().run()  # the add form's submit button
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "teak.safetensors added" in at.success[0].value.replace("\\", "")
    table = at.dataframe[0].value
    teak = table[table["file"] == "teak.safetensors"].iloc[0]
    assert teak[instance] == "✗ missing" and teak["licence"] == "apache-2.0"  # pinned, not synced yet
    assert any("missing on an instance" in w.value for w in at.warning)


def test_a_designer_sees_the_page_without_the_add_form_and_the_api_refuses_adding(
    page_stack: tuple[Stack, EmulatorProcess, object],
) -> None:
    stack, _emu, _s3 = page_stack
    asyncio.run(set_role(stack.settings, "alice", Role.designer))
    at = signed_in()
    at.switch_page("views/models.py").run()
    assert not at.exception
    assert at.dataframe[0].value is not None  # the inventory is for everyone
    assert "Add a model (leads)" not in [e.label for e in at.expander]  # the form is for leads
    with stack.client(DEMO_TOKEN) as alice:  # and the backend refuses a designer anyway
        body = {"folder": "loras", "file": "x.safetensors", "s3_key": "models/loras/x.safetensors"}
        assert_error(alice.post("/api/models", json={**body, "licence": "mit"}), 403, "forbidden_role")
