"""Does a folder of LoRA files match the style manifest? The check model sync, CI and a designer's
"why does my style do nothing" all need.

    python -m loras.check_manifest /opt/comfyui/models [--manifest loras/styles.toml] [--allow-unpublished]

The folder is a ComfyUI root (`models/loras/<file>`), its models folder (`loras/<file>`) or the folder
of LoRA files itself. For every style with a LoRA: the file exists, its size and SHA-256 are the
manifest's, and the style is published (sha256 set). Exit status 1 when anything disagrees.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from contract.files import sha256_file
from contract.styles import Manifest, ManifestError, Style, load_manifest
from loras.cli import configure_logging, description, write_out

logger = logging.getLogger(__name__)

ProblemCode = Literal["missing_file", "size_mismatch", "sha256_mismatch", "unpublished"]


@dataclass(frozen=True)
class Problem:
    style_id: str
    code: ProblemCode
    message: str

    def __str__(self) -> str:
        return f"{self.style_id}: [{self.code}] {self.message}"


def loras_dir(path: Path) -> Path:
    """The folder holding the LoRA files, given a ComfyUI root, its models folder or the folder itself."""
    for candidate in (path / "models" / "loras", path / "loras"):
        if candidate.is_dir():
            return candidate
    return path


def check_style(style: Style, folder: Path, require_published: bool = True) -> list[Problem]:
    """What is wrong with one style's LoRA file in `folder` (nothing for a style without LoRA)."""
    if not style.has_lora:
        return []
    if not style.sha256:
        if require_published:
            msg = f"{style.lora_file} has no sha256 in the manifest: publish it (python -m loras.publish)"
            return [Problem(style.id, "unpublished", msg)]
        logger.warning("style %s is not published yet; checking only that its file exists", style.id)
    path = folder / style.lora_file
    if not path.is_file():
        return [Problem(style.id, "missing_file", f"{style.lora_file} is not in {folder}")]
    if not style.sha256:
        return []
    size = path.stat().st_size
    if size != style.size_bytes:
        msg = f"{style.lora_file} is {size} bytes, the manifest says {style.size_bytes}"
        return [Problem(style.id, "size_mismatch", msg)]
    digest = sha256_file(path)
    if digest != style.sha256:
        msg = f"{style.lora_file} has sha256 {digest}, the manifest says {style.sha256}"
        return [Problem(style.id, "sha256_mismatch", msg)]
    return []


def check_manifest(manifest: Manifest, models_dir: Path, require_published: bool = True) -> list[Problem]:
    """Every disagreement between the manifest and the LoRA files under `models_dir`."""
    folder = loras_dir(models_dir)
    problems: list[Problem] = []
    for style in manifest.styles.values():
        problems += check_style(style, folder, require_published)
    return problems


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loras.check_manifest", description=description(__doc__))
    p.add_argument("models_dir", type=Path, help="ComfyUI root, its models folder, or a folder of LoRA files")
    p.add_argument("--manifest", type=Path, help="style manifest (default loras/styles.toml)")
    p.add_argument(
        "--allow-unpublished", action="store_true", help="styles without sha256 only need their file present"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    try:
        manifest = load_manifest(args.manifest)
    except ManifestError as exc:
        logger.error("%s", exc)
        return 2
    if not args.models_dir.is_dir():
        logger.error("%s is not a folder", args.models_dir)
        return 2
    problems = check_manifest(manifest, args.models_dir, not args.allow_unpublished)
    folder = loras_dir(args.models_dir)
    if problems:
        write_out(f"{len(problems)} problems in {folder}:\n" + "\n".join(f"  {p}" for p in problems))
        return 1
    write_out(f"OK: {folder} matches {manifest.path} ({len(manifest.lora_files)} LoRA files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
