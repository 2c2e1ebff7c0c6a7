"""comfyui_controlnet_aux's preprocessor weights, offline: the synced files laid out where the pack looks.

At the locked commit (cc6b232) a preprocessor that reads a file calls `custom_hf_download(repo_id, filename)`
(src/custom_controlnet_aux/util.py): it returns `<ckpts>/<repo_id>/<filename>` when that file exists and only
otherwise downloads it from Hugging Face. `<ckpts>` is the environment variable AUX_ANNOTATOR_CKPTS_PATH (the
pack's utils.py keeps an existing value; its own default is a `ckpts` folder inside the pack, read-only here).
Model sync puts the files, pinned by sha256, flat in `<models>/annotators/`; this links each one into that
layout, so nothing is downloaded at run time (the units also set HF_HUB_OFFLINE=1: a missing file fails the
prompt instead of reaching the network).

    python -m mlserver.provision.annotators --models-dir DIR --ckpts-dir DIR   # exit 1 if a file is missing

Run by comfyui@.service (ExecStartPre) and the SageMaker `serve` before ComfyUI starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from contract.model_manifest import ModelEntry, load_models_toml

FOLDER = "annotators"
# file → the Hugging Face repository the pack names for it (its ckpts subfolder), from the pack's source:
# depth_anything_v2/__init__.py + util.DEPTH_ANYTHING_V2_MODEL_NAME_DICT, mlsd/__init__.py (HF_MODEL_NAME).
LAYOUT = {
    "depth_anything_v2_vits.pth": "depth-anything/Depth-Anything-V2-Small",
    "mlsd_large_512_fp32.pth": "lllyasviel/Annotators",
}


class LayoutError(ValueError):
    """An annotator file the pack would not find (unknown to LAYOUT, or not synced)."""


def links(entries: Iterable[ModelEntry], models_dir: Path, ckpts_dir: Path) -> list[tuple[Path, Path]]:
    """(link, target) for every annotator of the manifest: where the pack reads it, and the synced file."""
    pairs = []
    for entry in entries:
        if entry.folder != FOLDER:
            continue
        repo = LAYOUT.get(entry.file)
        if repo is None:
            raise LayoutError(f"{entry.name}: {entry.file} has no known place in controlnet_aux's ckpts")
        pairs.append((ckpts_dir / repo / entry.file, entry.path(models_dir)))
    return pairs


def lay_out(pairs: Sequence[tuple[Path, Path]]) -> list[str]:
    """Make each link (replacing a stale one); the problems, one line per file that is not there."""
    missing = [f"{target} is missing (model sync writes it)" for _, target in pairs if not target.is_file()]
    if missing:
        return missing
    for link, target in pairs:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.is_symlink() and os.readlink(link) == str(target):
                continue
            link.unlink()
        link.symlink_to(target)
    return []


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mlserver.provision.annotators", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--models-dir", type=Path, required=True, help="what model sync fills")
    p.add_argument("--ckpts-dir", type=Path, required=True, help="AUX_ANNOTATOR_CKPTS_PATH of the instance")
    p.add_argument("--models-manifest", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        pairs = links(load_models_toml(args.models_manifest), args.models_dir, args.ckpts_dir)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"annotators: {exc}\n")
        return 1
    problems = lay_out(pairs)
    for line in problems:
        sys.stderr.write(f"annotators: {line}\n")
    if not problems:
        sys.stdout.write(f"annotators: {len(pairs)} files in place under {args.ckpts_dir}\n")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
