"""check_manifest.py: the manifest and the LoRA files on disk disagree -> a named problem and exit 1."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from contract.styles import Manifest, load_manifest, with_style
from loras.check_manifest import check_manifest, loras_dir, main
from loras.manifest_writer import save_manifest


def publish_locally(manifest_path: Path, models: Path, contents: dict[str, bytes]) -> Manifest:
    """Write LoRA files into a ComfyUI layout and pin them in the manifest (what publish + sync do)."""
    folder = models / "models" / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(manifest_path)
    for style_id, data in contents.items():
        style = manifest.get(style_id)
        (folder / style.lora_file).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        manifest = with_style(manifest, replace(style, sha256=digest, size_bytes=len(data)))
    save_manifest(manifest)
    return manifest


@pytest.fixture
def synced(tmp_path: Path, manifest_copy: Path) -> tuple[Manifest, Path]:
    models = tmp_path / "comfyui"
    manifest = publish_locally(
        manifest_copy, models, {"indochine": b"indochine" * 100, "minimalist": b"m" * 700}
    )
    return manifest, models


def test_matching_files_have_no_problem(synced: tuple[Manifest, Path]) -> None:
    manifest, models = synced
    assert check_manifest(manifest, models) == []


@pytest.mark.parametrize("given", ["root", "models", "loras"])
def test_the_loras_folder_is_found_from_any_level(synced: tuple[Manifest, Path], given: str) -> None:
    _, models = synced
    path = {"root": models, "models": models / "models", "loras": models / "models" / "loras"}[given]
    assert loras_dir(path) == models / "models" / "loras"


def test_a_missing_file_is_reported(synced: tuple[Manifest, Path]) -> None:
    manifest, models = synced
    (models / "models" / "loras" / "minimalist_v1.safetensors").unlink()
    [problem] = check_manifest(manifest, models)
    assert (problem.style_id, problem.code) == ("minimalist", "missing_file")
    assert "minimalist_v1.safetensors is not in" in str(problem)


def test_a_size_mismatch_is_reported(synced: tuple[Manifest, Path]) -> None:
    manifest, models = synced
    (models / "models" / "loras" / "indochine_v1.safetensors").write_bytes(b"short")
    [problem] = check_manifest(manifest, models)
    assert (problem.style_id, problem.code) == ("indochine", "size_mismatch")
    assert "is 5 bytes, the manifest says 900" in problem.message


def test_a_sha256_mismatch_is_reported(synced: tuple[Manifest, Path]) -> None:
    manifest, models = synced
    (models / "models" / "loras" / "indochine_v1.safetensors").write_bytes(b"INDOCHINE" * 100)
    [problem] = check_manifest(manifest, models)
    assert (problem.style_id, problem.code) == ("indochine", "sha256_mismatch")


def test_an_unpublished_style_is_reported_unless_allowed(tmp_path: Path) -> None:
    manifest = load_manifest()  # the committed one: LoRA styles not pinned yet
    folder = tmp_path / "loras"
    folder.mkdir()
    for name in manifest.lora_files:
        (folder / name).write_bytes(b"x")
    problems = check_manifest(manifest, folder)
    assert {(p.style_id, p.code) for p in problems} == {
        ("indochine", "unpublished"),
        ("minimalist", "unpublished"),
    }
    assert check_manifest(manifest, folder, require_published=False) == []
    (folder / "indochine_v1.safetensors").unlink()
    [problem] = check_manifest(manifest, folder, require_published=False)
    assert problem.code == "missing_file"


def test_cli_exit_status(synced: tuple[Manifest, Path], manifest_copy: Path, capsys) -> None:
    _, models = synced
    assert main([str(models), "--manifest", str(manifest_copy)]) == 0
    assert capsys.readouterr().out.startswith("OK: ")
    (models / "models" / "loras" / "indochine_v1.safetensors").unlink()
    assert main([str(models), "--manifest", str(manifest_copy)]) == 1
    assert "indochine: [missing_file]" in capsys.readouterr().out
    assert main([str(models / "nowhere"), "--manifest", str(manifest_copy)]) == 2
