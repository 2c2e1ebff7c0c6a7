"""The committed manifest and training configs are well-formed, and the manifest writer round-trips."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from contract.styles import MANIFEST_PATH, PreviousVersion, load_manifest, with_style
from loras.manifest_writer import dumps_manifest, manifest_header, save_manifest
from loras.publish import s3_key
from loras.train import config_path, load_config

MANIFEST = load_manifest(MANIFEST_PATH)


def test_every_style_loads_and_the_default_exists() -> None:
    assert {"indochine", "minimalist", "none"} <= set(MANIFEST.ids)
    assert MANIFEST.default_style in MANIFEST.styles
    assert not MANIFEST.get("none").has_lora


def test_style_ids_and_lora_files_are_unique() -> None:
    # tomllib already refuses a repeated [styles.<id>] table; two styles must not share a LoRA file either.
    data = tomllib.loads(MANIFEST_PATH.read_text())
    assert len(data["styles"]) == len(MANIFEST.ids)
    files = [s.lora_file for s in MANIFEST.styles.values() if s.has_lora]
    assert len(files) == len(set(files))


@pytest.mark.parametrize("style_id", MANIFEST.ids)
def test_templates_take_the_prompt_and_the_negative(style_id: str) -> None:
    style = MANIFEST.get(style_id)
    assert "{prompt}" in style.prompt_template
    assert "{negative}" in style.negative_template
    rendered = style.render_prompt("a kitchen")
    assert "a kitchen" in rendered and "{" not in rendered
    if style.has_lora:
        assert style.trigger_words and rendered.startswith(style.trigger)


@pytest.mark.parametrize("style_id", MANIFEST.ids)
def test_a_preview_image_is_a_rendered_png_when_there_is_one(style_id: str) -> None:
    """Previews come from `make previews` once the LoRAs are published; until then the studio draws a
    designed card (no image of the word placeholder is committed)."""
    path = MANIFEST.preview_path(style_id)
    assert path.parent.is_dir(), f"{path.parent} is missing: `make previews` writes there"
    if not path.is_file():
        return
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= 128


@pytest.mark.parametrize("style_id", [s for s in MANIFEST.ids if MANIFEST.get(s).has_lora])
def test_lora_styles_follow_the_publish_layout(style_id: str) -> None:
    style = MANIFEST.get(style_id)
    assert style.lora_file.endswith(".safetensors")
    assert style.s3_key == s3_key(style_id, style.version, style.lora_file)
    assert 0 < style.strength_model <= 2 and 0 < style.strength_clip <= 2


@pytest.mark.parametrize("style_id", [s for s in MANIFEST.ids if MANIFEST.get(s).has_lora])
def test_every_lora_style_has_a_kohya_training_config(style_id: str) -> None:
    config = load_config(config_path(style_id))
    assert config["network_module"] == "networks.lora"
    assert config["resolution"] == "512"
    assert config["caption_extension"] == ".txt"
    assert config["save_model_as"] == "safetensors"
    assert config["mixed_precision"] in ("fp16", "bf16")
    assert config["output_name"] == Path(MANIFEST.get(style_id).lora_file).stem
    assert isinstance(config["network_dim"], int) and 0 < config["network_alpha"] <= config["network_dim"]
    assert config["learning_rate"] >= 1e-5 and config["text_encoder_lr"] < config["unet_lr"]


# --- writer -----------------------------------------------------------------------------------------------


def test_rewriting_the_committed_manifest_changes_nothing() -> None:
    text = MANIFEST_PATH.read_text()
    assert dumps_manifest(MANIFEST, manifest_header(text), tomllib.loads(text)) == text


def test_save_keeps_the_header_and_unknown_keys_and_writes_previous(manifest_copy: Path) -> None:
    text = manifest_copy.read_text().replace(
        'preview_image = "previews/minimalist.png"',
        'preview_image = "previews/minimalist.png"\nsort_order = 2\nbadges = ["new", "beta"]',
    )
    manifest_copy.write_text(
        text.replace('default_style = "none"', 'default_style = "none"\nowner = "ml-team"')
    )
    manifest = load_manifest(manifest_copy)
    style = manifest.get("minimalist")
    older = PreviousVersion("v0", "minimalist_v0.safetensors", "a" * 64, 123, "loras/minimalist/v0/x")
    save_manifest(with_style(manifest, replace(style, previous=(older,), description='Say "calm"\tnow')))

    saved = manifest_copy.read_text()
    assert saved.startswith(manifest_header(MANIFEST_PATH.read_text()))
    data = tomllib.loads(saved)
    assert data["owner"] == "ml-team"
    assert data["styles"]["minimalist"]["sort_order"] == 2
    assert data["styles"]["minimalist"]["badges"] == ["new", "beta"]
    reloaded = load_manifest(manifest_copy).get("minimalist")
    assert reloaded.previous == (older,)
    assert reloaded.description == 'Say "calm"\tnow'
    assert load_manifest(manifest_copy).get("indochine") == MANIFEST.get("indochine")


def test_save_to_a_new_file_writes_a_default_header(tmp_path: Path) -> None:
    target = tmp_path / "styles.toml"
    save_manifest(MANIFEST, target)
    assert target.read_text().startswith("# The style manifest")
    assert load_manifest(target).styles == MANIFEST.styles
