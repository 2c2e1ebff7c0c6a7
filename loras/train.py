"""Render (and, where sd-scripts is installed, run) the kohya training command for one style.

    python -m loras.train indochine --data-dir datasets/indochine --base-model models/sd15.safetensors
    python -m loras.train indochine --data-dir ... --version v2 --run -- --seed 7   # on a GPU host

The command is `accelerate launch ... <sd-scripts>/train_network.py --config_file loras/configs/<style>.toml`
plus the flags that differ per run (data, base model, output folder and name), which override the file.
Before anything is printed the dataset is checked: a `<repeats>_<trigger>` folder (sd-scripts' folder
convention, as `prepare_dataset.py` writes it) with images and a non-empty `.txt` caption for each.
`--run` needs sd-scripts (`--sd-scripts`, default $SD_SCRIPTS_DIR or ./sd-scripts, installed on the
SageMaker notebook by `notebook_lifecycle.sh`) and `accelerate` on PATH.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from contract.styles import ManifestError, load_manifest
from loras.cli import configure_logging, description, write_out

logger = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).with_name("configs")
SD_SCRIPTS_ENV = "SD_SCRIPTS_DIR"
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
REQUIRED_KEYS = ("network_module", "network_dim", "resolution", "output_name", "mixed_precision")


class TrainError(RuntimeError):
    """The config, the dataset or the training host is not ready."""


@dataclass(frozen=True)
class Subset:
    name: str
    repeats: int
    class_tokens: str
    images: int


@dataclass
class DatasetCheck:
    subsets: list[Subset] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def images_per_epoch(self) -> int:
        return sum(s.images * s.repeats for s in self.subsets)


@dataclass(frozen=True)
class RunSpec:
    """What differs per run; the rest comes from the style's config file."""

    style_id: str
    config_path: Path
    data_dir: Path
    sd_scripts: Path
    base_model: Path | None = None
    output_dir: Path | None = None
    output_name: str | None = None
    num_processes: int = 1
    accelerate: str = "accelerate"
    extra_args: tuple[str, ...] = ()


def config_path(style_id: str) -> Path:
    return CONFIGS_DIR / f"{style_id}.toml"


def load_config(path: Path) -> dict[str, Any]:
    """The config as sd-scripts reads it: every table flattened into one namespace."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TrainError(f"cannot read training config {path}: {exc}") from exc
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(value if isinstance(value, dict) else {key: value})
    missing = [k for k in REQUIRED_KEYS if k not in flat]
    if missing:
        raise TrainError(f"{path} lacks {', '.join(missing)}")
    if flat["network_module"] != "networks.lora":
        raise TrainError(f"{path}: network_module must be networks.lora")
    if not isinstance(flat["resolution"], str):
        raise TrainError(f'{path}: resolution must be a string ("512"): sd-scripts splits it on ","')
    return flat


# --- dataset ----------------------------------------------------------------------------------------------


def _parse_subset_name(name: str) -> tuple[int, str] | None:
    head, _, tokens = name.partition("_")
    return (int(head), tokens) if head.isdigit() and int(head) >= 1 else None


def _check_subset(folder: Path, check: DatasetCheck, trigger: str | None) -> None:
    parsed = _parse_subset_name(folder.name)
    if parsed is None:
        check.warnings.append(f"{folder.name}: not <repeats>_<tokens>, sd-scripts ignores it")
        return
    repeats, tokens = parsed
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        check.errors.append(f"{folder.name}: no images")
    uncaptioned = [p.name for p in images if not _has_caption(p)]
    if uncaptioned:
        check.errors.append(
            f"{folder.name}: {len(uncaptioned)} images without a caption, e.g. {uncaptioned[0]}"
        )
    odd = [p.name for p in images if _size(p) != (512, 512)]
    if odd:
        check.warnings.append(f"{folder.name}: {len(odd)} images are not 512x512 (sd-scripts will crop them)")
    if trigger and tokens != trigger:
        check.warnings.append(f"{folder.name}: class tokens {tokens!r} differ from the trigger {trigger!r}")
    check.subsets.append(Subset(folder.name, repeats, tokens, len(images)))


def _has_caption(image: Path) -> bool:
    caption = image.with_suffix(".txt")
    return caption.is_file() and bool(caption.read_text(encoding="utf-8").strip())


def _size(image: Path) -> tuple[int, int]:
    with Image.open(image) as im:
        return im.size


def check_dataset(data_dir: Path, trigger: str | None = None) -> DatasetCheck:
    """sd-scripts' folder convention: `<data_dir>/<repeats>_<class tokens>/` with captioned images."""
    check = DatasetCheck()
    if not data_dir.is_dir():
        check.errors.append(f"{data_dir} does not exist (python -m loras.prepare_dataset writes it)")
        return check
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        _check_subset(folder, check, trigger)
    if not check.subsets:
        check.errors.append(f"{data_dir} has no <repeats>_<trigger> folder")
    return check


def estimated_steps(check: DatasetCheck, config: dict[str, Any]) -> int:
    """Steps per epoch × epochs, as sd-scripts counts them (batch size from the config)."""
    batch = int(config.get("train_batch_size", 1))
    epochs = int(config.get("max_train_epochs", 1))
    return math.ceil(check.images_per_epoch / batch) * epochs


# --- command ----------------------------------------------------------------------------------------------


def render_command(spec: RunSpec, config: dict[str, Any]) -> list[str]:
    """`accelerate launch` + train_network.py + the config + the per-run overrides."""
    cmd = [
        spec.accelerate, "launch",
        "--num_cpu_threads_per_process", "1",
        "--num_processes", str(spec.num_processes),
        "--num_machines", "1",
        "--mixed_precision", str(config["mixed_precision"]),
        str(spec.sd_scripts / "train_network.py"),
        "--config_file", str(spec.config_path),
        "--train_data_dir", str(spec.data_dir),
    ]  # fmt: skip
    if spec.base_model is not None:
        cmd += ["--pretrained_model_name_or_path", str(spec.base_model)]
    if spec.output_dir is not None:
        cmd += ["--output_dir", str(spec.output_dir)]
    if spec.output_name is not None:
        cmd += ["--output_name", spec.output_name]
    return cmd + list(spec.extra_args)


def absolute(spec: RunSpec) -> RunSpec:
    """Every path made absolute: the run starts inside the sd-scripts checkout."""

    def resolve(p: Path | None) -> Path | None:
        return p.resolve() if p is not None else None

    return RunSpec(
        spec.style_id, spec.config_path.resolve(), spec.data_dir.resolve(), spec.sd_scripts.resolve(),
        resolve(spec.base_model), resolve(spec.output_dir), spec.output_name, spec.num_processes,
        spec.accelerate, spec.extra_args,
    )  # fmt: skip


def check_host(spec: RunSpec) -> None:
    """What `--run` needs: the sd-scripts checkout, accelerate, the base model."""
    if not (spec.sd_scripts / "train_network.py").is_file():
        raise TrainError(f"sd-scripts not found at {spec.sd_scripts} (--sd-scripts or ${SD_SCRIPTS_ENV})")
    if shutil.which(spec.accelerate) is None:
        raise TrainError(f"{spec.accelerate!r} is not on PATH: activate the sd-scripts environment")
    if spec.base_model is not None and not spec.base_model.is_file():
        raise TrainError(f"base model {spec.base_model} not found")


def run_training(spec: RunSpec, config: dict[str, Any]) -> int:
    spec = absolute(spec)
    check_host(spec)
    cmd = render_command(spec, config)
    logger.info("starting training", extra={"action": "training_started", "style": spec.style_id})
    return subprocess.run(cmd, cwd=spec.sd_scripts, check=False).returncode


# --- command line -----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loras.train", description=description(__doc__))
    p.add_argument("style", help="style id: loras/configs/<style>.toml")
    p.add_argument(
        "--data-dir", type=Path, required=True, help="kohya train_data_dir (prepare_dataset output)"
    )
    p.add_argument("--base-model", type=Path, help="SD 1.5 checkpoint (default: the config's)")
    p.add_argument("--output-dir", type=Path, help="where the LoRA files go (default: the config's)")
    p.add_argument("--version", help="output name <style>_<version> (default: the config's output_name)")
    p.add_argument("--config", type=Path, help="training config (default loras/configs/<style>.toml)")
    p.add_argument("--sd-scripts", type=Path, default=Path(os.environ.get(SD_SCRIPTS_ENV, "sd-scripts")))
    p.add_argument("--num-processes", type=int, default=1, help="GPUs to train on")
    p.add_argument("--accelerate", default="accelerate", help="accelerate executable")
    p.add_argument("--manifest", type=Path, help="style manifest, for the trigger words")
    p.add_argument("--run", action="store_true", help="run the command (needs sd-scripts and a GPU)")
    p.epilog = "Arguments after -- go to train_network.py as they are (e.g. -- --max_train_epochs 2)."
    return p


def _trigger(args: argparse.Namespace) -> str | None:
    try:
        return load_manifest(args.manifest).get(args.style).trigger or None
    except ManifestError as exc:
        logger.warning("no trigger words to compare the dataset with: %s", exc)
        return None


def _spec(args: argparse.Namespace, extra: Sequence[str]) -> RunSpec:
    name = f"{args.style}_{args.version}" if args.version else None
    return RunSpec(
        args.style, args.config or config_path(args.style), args.data_dir, args.sd_scripts,
        args.base_model, args.output_dir, name, args.num_processes, args.accelerate, tuple(extra),
    )  # fmt: skip


def _split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Ours before `--`, train_network.py's after it."""
    args = list(argv)
    if "--" not in args:
        return args, []
    i = args.index("--")
    return args[:i], args[i + 1 :]


def main(argv: Sequence[str] | None = None) -> int:
    ours, extra = _split_extra(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(ours)
    configure_logging()
    spec = _spec(args, extra)
    try:
        config = load_config(spec.config_path)
    except TrainError as exc:
        logger.error("%s", exc)
        return 2
    check = check_dataset(spec.data_dir, _trigger(args))
    for warning in check.warnings:
        logger.warning("%s", warning)
    if check.errors:
        logger.error("dataset not ready:\n  %s", "\n  ".join(check.errors))
        return 1
    steps = estimated_steps(check, config)
    logger.info("%d images x repeats per epoch, about %d steps", check.images_per_epoch, steps)
    write_out(shlex.join(render_command(absolute(spec) if args.run else spec, config)))
    if not args.run:
        return 0
    try:
        return run_training(spec, config)
    except TrainError as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
