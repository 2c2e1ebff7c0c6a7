"""From a folder of photos to a kohya sd-scripts dataset for one style.

    python -m loras.prepare_dataset photos/indochine datasets/indochine --style indochine [--crop smart]

1. Every image under the source (png/jpg/jpeg/webp/bmp) is opened (EXIF rotation applied); unreadable
   ones, ones whose short side is under `--min-side` (default 512) and very elongated ones are rejected.
2. Near-duplicates (64-bit difference hash within `--dedupe-distance` bits) are rejected, keeping the
   largest image of each group.
3. The rest are cropped square (center, or `smart`: the window with the most edge detail) and resized
   to 512×512 PNGs in `<output>/<repeats>_<trigger>/`, sd-scripts' folder convention (repeats, then the
   class tokens), each with a `.txt` caption: the trigger words, then a BLIP caption (`captions.py`).
4. `<output>/prepare_report.json` lists what was kept (source, crop box, caption) and every reject
   with its reason; a summary is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from contract.styles import ManifestError, load_manifest
from loras.captions import DEFAULT_BLIP_MODEL, Captioner, CaptionSettings, kohya_caption
from loras.cli import configure_logging, description, write_out

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})  # what sd-scripts reads
TARGET_SIZE = 512
MIN_SIDE = 512
MAX_ASPECT = 3.0  # a square crop of a wider panorama keeps under a third of it
DEDUPE_DISTANCE = 6  # of 64 hash bits: re-encodes and resizes of one photo land within a few bits
DEFAULT_REPEATS = 10
MIN_IMAGES_WARNING = 15
REPORT_NAME = "prepare_report.json"
CAPTION_CHUNK = 32  # images decoded at a time for the captioner
Crop = Literal["center", "smart"]
SUBSET_RE = re.compile(r"^[0-9]+_")  # sd-scripts trains every such folder of train_data_dir


@dataclass(frozen=True)
class PrepareOptions:
    size: int = TARGET_SIZE
    min_side: int = MIN_SIDE
    max_aspect: float = MAX_ASPECT
    crop: Crop = "center"
    repeats: int = DEFAULT_REPEATS
    dedupe_distance: int = DEDUPE_DISTANCE
    overwrite: bool = False


@dataclass(frozen=True)
class Candidate:
    source: Path
    width: int
    height: int
    dhash: int


@dataclass(frozen=True)
class Kept:
    source: str
    image: str
    caption_file: str
    crop_box: tuple[int, int, int, int]
    original_size: tuple[int, int]
    caption: str = ""


@dataclass(frozen=True)
class Reject:
    source: str
    reason: Literal["unreadable", "too_small", "aspect", "duplicate"]
    detail: str


@dataclass
class DatasetReport:
    source_dir: str
    subset_dir: str
    trigger: str
    repeats: int
    crop: str
    caption_model: str
    kept: list[Kept] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    def summary(self) -> str:
        by_reason: dict[str, int] = {}
        for r in self.rejects:
            by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(by_reason.items())) or "none"
        lines = [
            f"dataset {self.subset_dir}: {len(self.kept)} kept, {len(self.rejects)} rejected ({reasons})",
            f"  trigger {self.trigger!r}, {self.repeats} repeats, {self.crop} crop, "
            f"captions: {self.caption_model}",
        ]
        lines += [f"  rejected {r.source}: {r.reason} ({r.detail})" for r in self.rejects]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# --- images -----------------------------------------------------------------------------------------------


def find_images(source: Path) -> list[Path]:
    """Image files under `source`, recursively, in a stable order (hidden folders skipped)."""
    return sorted(
        p
        for p in source.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(source).parts)
    )


def open_rgb(path: Path) -> Image.Image:
    """The image upright (EXIF orientation) in RGB; transparency flattened onto white."""
    with Image.open(path) as im:
        im.load()
        upright = ImageOps.exif_transpose(im)
    if upright.mode in ("RGBA", "LA") or (upright.mode == "P" and "transparency" in upright.info):
        rgba = upright.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return upright.convert("RGB")


def dhash(image: Image.Image, hash_size: int = 8) -> int:
    """Difference hash: is each pixel of a (n+1)×n grey thumbnail brighter than its left neighbour."""
    small = image.convert("L").resize((hash_size + 1, hash_size), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def center_box(width: int, height: int) -> tuple[int, int, int, int]:
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def smart_box(image: Image.Image) -> tuple[int, int, int, int]:
    """The square window along the long side with the most edge energy (furniture, not bare wall or sky).

    Computed on a thumbnail; a slight pull towards the center breaks ties on plain images.
    """
    width, height = image.size
    side = min(width, height)
    if width == height:
        return 0, 0, width, height
    scale = 64 / side
    thumb = image.convert("L").resize((max(1, round(width * scale)), max(1, round(height * scale))))
    g = np.asarray(thumb, dtype=np.float32)
    energy = np.abs(np.diff(g, axis=1))[:-1, :] + np.abs(np.diff(g, axis=0))[:, :-1]
    profile = energy.sum(axis=0 if width > height else 1)
    window = min(len(profile), 63)
    sums = np.convolve(profile, np.ones(window), mode="valid")
    offsets = np.arange(len(sums))
    centre = (len(sums) - 1) / 2
    score = sums * (1.0 - 0.05 * np.abs(offsets - centre) / max(centre, 1.0))
    start = round(int(np.argmax(score)) / scale)
    start = min(max(start, 0), max(width, height) - side)
    return (start, 0, start + side, side) if width > height else (0, start, side, start + side)


def crop_square(image: Image.Image, crop: Crop, size: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
    box = smart_box(image) if crop == "smart" else center_box(*image.size)
    return image.crop(box).resize((size, size), Image.Resampling.LANCZOS), box


# --- selection --------------------------------------------------------------------------------------------


def inspect(paths: Sequence[Path], options: PrepareOptions) -> tuple[list[Candidate], list[Reject]]:
    """Open every file once: readable, big enough, not too elongated; hash the survivors."""
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    for path in paths:
        try:
            image = open_rgb(path)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
            rejects.append(Reject(str(path), "unreadable", f"{type(exc).__name__}: {exc}"))
            continue
        w, h = image.size
        if min(w, h) < options.min_side:
            rejects.append(Reject(str(path), "too_small", f"{w}x{h}, short side under {options.min_side}"))
        elif max(w, h) / min(w, h) > options.max_aspect:
            rejects.append(Reject(str(path), "aspect", f"{w}x{h} is wider than {options.max_aspect:g}:1"))
        else:
            candidates.append(Candidate(path, w, h, dhash(image)))
    return candidates, rejects


def drop_duplicates(candidates: Sequence[Candidate], distance: int) -> tuple[list[Candidate], list[Reject]]:
    """Keep the largest image of each group of near-identical ones; the result is in source order."""
    kept: list[Candidate] = []
    rejects: list[Reject] = []
    for c in sorted(candidates, key=lambda c: (-c.width * c.height, str(c.source))):
        twin = next((k for k in kept if hamming(k.dhash, c.dhash) <= distance), None)
        if twin is None:
            kept.append(c)
        else:
            detail = f"of {twin.source} (hash distance {hamming(twin.dhash, c.dhash)})"
            rejects.append(Reject(str(c.source), "duplicate", detail))
    kept.sort(key=lambda c: str(c.source))
    return kept, rejects


# --- output -----------------------------------------------------------------------------------------------


def subset_dir_name(repeats: int, trigger: str) -> str:
    """sd-scripts' `<repeats>_<class tokens>`: the trigger words are the class tokens."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    tokens = " ".join(trigger.replace("/", " ").split())
    if not tokens:
        raise ValueError("the trigger words are empty")
    return f"{repeats}_{tokens}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "image"


def _prepare_subset(output: Path, name: str, overwrite: bool) -> Path:
    """An empty `<repeats>_<trigger>` folder; sd-scripts would train on any other subset folder left there."""
    subset = output / name
    stale = [
        p for p in (output.iterdir() if output.is_dir() else []) if p.is_dir() and SUBSET_RE.match(p.name)
    ]
    stale = [p for p in stale if p != subset or any(p.iterdir())]
    if stale and not overwrite:
        names = ", ".join(sorted(p.name for p in stale))
        raise FileExistsError(f"{output} already holds {names}: pass --overwrite to replace it")
    for folder in stale:
        shutil.rmtree(folder)
    subset.mkdir(parents=True, exist_ok=True)
    return subset


def write_images(kept: Sequence[Candidate], subset: Path, options: PrepareOptions) -> list[Kept]:
    records = []
    for index, c in enumerate(kept, start=1):
        square, box = crop_square(open_rgb(c.source), options.crop, options.size)
        image_path = subset / f"{index:04d}_{_slug(c.source.stem)}.png"
        square.save(image_path, format="PNG", optimize=False)
        caption_path = image_path.with_suffix(".txt")
        records.append(Kept(str(c.source), str(image_path), str(caption_path), box, (c.width, c.height)))
    return records


def _caption_chunk(chunk: Sequence[Kept], captioner: Captioner | None) -> list[str]:
    if captioner is None:
        return [""] * len(chunk)
    images = []
    for record in chunk:
        with Image.open(record.image) as im:
            images.append(im.convert("RGB"))
    return captioner.caption(images)


def write_captions(records: Sequence[Kept], trigger: str, captioner: Captioner | None) -> list[Kept]:
    """One `.txt` per image (UTF-8, one line, never empty: at least the trigger words)."""
    out = []
    for start in range(0, len(records), CAPTION_CHUNK):
        chunk = records[start : start + CAPTION_CHUNK]
        for record, text in zip(chunk, _caption_chunk(chunk, captioner), strict=True):
            line = kohya_caption(trigger, text)
            Path(record.caption_file).write_text(line + "\n", encoding="utf-8")
            out.append(Kept(**{**asdict(record), "caption": line}))
    return out


def prepare_dataset(
    source: Path,
    output: Path,
    trigger: str,
    captioner: Captioner | None,
    options: PrepareOptions | None = None,
    caption_model: str = "",
) -> DatasetReport:
    """Build `<output>/<repeats>_<trigger>/` and `<output>/prepare_report.json`; return the report."""
    options = options or PrepareOptions()
    if not source.is_dir():
        raise FileNotFoundError(f"source folder {source} does not exist")
    subset = _prepare_subset(output, subset_dir_name(options.repeats, trigger), options.overwrite)
    candidates, rejects = inspect(find_images(source), options)
    kept, duplicates = drop_duplicates(candidates, options.dedupe_distance)
    records = write_captions(write_images(kept, subset, options), trigger, captioner)
    model = caption_model or ("none" if captioner is None else type(captioner).__name__)
    report = DatasetReport(
        str(source), str(subset), trigger, options.repeats, options.crop, model, records, rejects + duplicates
    )
    if len(records) < MIN_IMAGES_WARNING:
        report.warnings.append(f"only {len(records)} images: a style LoRA usually wants 30-50")
    (output / REPORT_NAME).write_text(report.to_json(), encoding="utf-8")
    logger.info("dataset prepared", extra={"action": "dataset_prepared", "kept": len(records)})
    return report


# --- command line -----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loras.prepare_dataset", description=description(__doc__))
    p.add_argument("source", type=Path, help="folder of photos (searched recursively)")
    p.add_argument("output", type=Path, help="kohya train_data_dir to write")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--style", help="style id in the manifest (its trigger words are used)")
    who.add_argument("--trigger", help="trigger words, when the style is not in the manifest yet")
    p.add_argument("--manifest", type=Path, help="style manifest (default loras/styles.toml)")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="kohya num_repeats (folder prefix)")
    p.add_argument("--crop", choices=("center", "smart"), default="center")
    p.add_argument("--size", type=int, default=TARGET_SIZE)
    p.add_argument("--min-side", type=int, default=MIN_SIDE, help="reject images whose short side is smaller")
    p.add_argument("--dedupe-distance", type=int, default=DEDUPE_DISTANCE, help="dHash bits; -1 keeps all")
    p.add_argument("--overwrite", action="store_true", help="replace an existing subset folder")
    p.add_argument("--no-captions", action="store_true", help="write only the trigger words (no BLIP)")
    p.add_argument("--caption-model", default=DEFAULT_BLIP_MODEL, help="BLIP model id or local folder")
    p.add_argument("--caption-prompt", default="", help='conditional BLIP prompt, e.g. "a photography of"')
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--num-beams", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print the JSON report instead of the summary")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _captioner(args: argparse.Namespace) -> Captioner | None:
    if args.no_captions:
        return None
    from loras.captions import BlipCaptioner

    settings = CaptionSettings(
        model_id=args.caption_model, device=args.device, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, num_beams=args.num_beams, prompt=args.caption_prompt,
    )  # fmt: skip
    return BlipCaptioner(settings)


def _trigger(args: argparse.Namespace) -> str:
    if args.trigger is not None:
        return str(args.trigger)
    style = load_manifest(args.manifest).get(args.style)
    if not style.trigger:
        raise ManifestError(f"style {style.id!r} has no trigger words to train on")
    return style.trigger


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.verbose)
    options = PrepareOptions(
        size=args.size, min_side=args.min_side, crop=args.crop, repeats=args.repeats,
        dedupe_distance=args.dedupe_distance, overwrite=args.overwrite,
    )  # fmt: skip
    try:
        trigger = _trigger(args)
        model = "none" if args.no_captions else args.caption_model
        report = prepare_dataset(args.source, args.output, trigger, _captioner(args), options, model)
    except (ManifestError, OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    write_out(report.to_json() if args.json else report.summary())
    return 0 if report.kept else 1


if __name__ == "__main__":
    sys.exit(main())
