"""The style manifest reader: where it looks, what it refuses (naming the style), the prompts it renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contract.styles import MANIFEST_PATH, ManifestError, load_manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "display_name": "Japandi",
    "description": "Japanese calm meets Scandinavian warmth.",
    "lora_file": "japandi_v1.safetensors",
    "version": "v1",
    "trigger_words": ["japandi style"],
    "prompt_template": "{trigger}, {prompt}, photoreal",
    "negative_template": "{negative}, clutter",
}


def manifest_of(style_id: str = "japandi", **changes: Any) -> dict[str, Any]:
    return {"default_style": style_id, "styles": {style_id: {**GOOD, **changes}}}


def test_the_default_manifest_is_the_lora_pipelines_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STYLE_MANIFEST", raising=False)
    assert MANIFEST_PATH == ROOT / "loras" / "styles.toml"
    assert load_manifest().path == MANIFEST_PATH


def test_style_manifest_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "styles.toml"
    path.write_text('[styles.japandi]\ndisplay_name = "J"\ndescription = "d"\nversion = "v1"\n')
    monkeypatch.setenv("STYLE_MANIFEST", str(path))
    assert load_manifest().ids == ["japandi"]


@pytest.mark.parametrize(
    ("style_id", "changes", "message"),
    [
        ("Japandi", {}, "lower-case letters"),
        ("japandi", {"lora_file": "../japandi.safetensors"}, "bare file name"),
        ("japandi", {"prompt_template": "{trigger} only"}, "must contain {prompt}"),
        ("japandi", {"sha256": "ABC"}, "64 lower-case hex"),
        ("japandi", {"strength_model": "strong"}, "style 'japandi'"),
    ],
)
def test_a_malformed_style_is_refused_naming_it(style_id: str, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(manifest_of(style_id, **changes), Path("styles.toml"))


def test_an_unknown_default_or_no_style_is_refused() -> None:
    with pytest.raises(ManifestError, match="default_style 'baroque'"):
        parse_manifest({**manifest_of(), "default_style": "baroque"}, Path("styles.toml"))
    with pytest.raises(ManifestError, match="no \\[styles"):
        parse_manifest({"styles": {}}, Path("styles.toml"))
    with pytest.raises(ManifestError, match="cannot read style manifest"):
        load_manifest(ROOT / "no-such-styles.toml")


def test_prompts_are_rendered_without_the_gaps_an_empty_part_leaves() -> None:
    style = parse_manifest(manifest_of(), Path("styles.toml")).get("japandi")
    assert style.render_prompt("  sunlit loft ") == "japandi style, sunlit loft, photoreal"
    assert style.render_negative("") == "clutter"
    bare = parse_manifest(manifest_of(trigger_words=[]), Path("styles.toml")).get("japandi")
    assert bare.render_prompt("loft") == "loft, photoreal"
