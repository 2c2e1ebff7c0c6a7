"""prepare_dataset.py on synthetic photos: sizes, crops, duplicates, rejects, caption files, kohya layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loras.captions import CaptionSettings
from loras.prepare_dataset import (
    PrepareOptions,
    center_box,
    dhash,
    hamming,
    main,
    open_rgb,
    prepare_dataset,
    smart_box,
    subset_dir_name,
)


def photo(seed: int, size: tuple[int, int]) -> Image.Image:
    """A 'photo' with structure at several scales, different for every seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    noise = rng.integers(-12, 12, size=(size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8))


class FakeCaptioner:
    """Same interface as BlipCaptioner; records the batches it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def caption(self, images):
        self.seen += [im.size for im in images]
        return [f"a room number {len(self.seen) - len(images) + i}" for i in range(len(images))]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    photo(1, (1024, 768)).save(src / "living.jpg", quality=95)
    photo(2, (600, 900)).save(src / "sub" / "bedroom.png")
    photo(3, (512, 512)).save(src / "kitchen.webp")
    photo(1, (1024, 768)).resize((800, 600)).save(src / "living-small-copy.jpg", quality=70)  # duplicate
    photo(4, (300, 400)).save(src / "tiny.png")  # too small
    photo(5, (2400, 600)).save(src / "panorama.jpg")  # too elongated
    (src / "broken.jpg").write_bytes(b"not a jpeg at all")
    (src / "notes.txt").write_text("ignored: not an image")
    return src


def test_a_folder_of_photos_becomes_a_kohya_dataset(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    captioner = FakeCaptioner()
    report = prepare_dataset(photos, out, "indochine style", captioner, PrepareOptions(repeats=12))

    subset = out / "12_indochine style"
    assert Path(report.subset_dir) == subset
    images = sorted(subset.glob("*.png"))
    assert [p.name for p in images] == ["0001_kitchen.png", "0002_living.png", "0003_bedroom.png"]
    for image in images:
        with Image.open(image) as im:
            assert (im.size, im.mode) == ((512, 512), "RGB")
        caption = image.with_suffix(".txt").read_text(encoding="utf-8")
        assert caption.startswith("indochine style, a room number ") and caption.endswith("\n")
        assert caption.count("\n") == 1
    assert captioner.seen == [(512, 512)] * 3
    assert sorted(p.name for p in subset.iterdir()) == sorted(
        [p.name for p in images] + [p.with_suffix(".txt").name for p in images]
    )


def test_rejects_are_reported_with_reasons(photos: Path, tmp_path: Path) -> None:
    report = prepare_dataset(photos, tmp_path / "ds", "indochine style", None)
    reasons = {Path(r.source).name: r.reason for r in report.rejects}
    assert reasons == {
        "living-small-copy.jpg": "duplicate",
        "tiny.png": "too_small",
        "panorama.jpg": "aspect",
        "broken.jpg": "unreadable",
    }
    duplicate = next(r for r in report.rejects if r.reason == "duplicate")
    assert "living.jpg" in duplicate.detail  # the larger copy is the one kept
    assert "300x400" in next(r.detail for r in report.rejects if r.reason == "too_small")

    saved = json.loads((tmp_path / "ds" / "prepare_report.json").read_text())
    assert len(saved["kept"]) == 3 and len(saved["rejects"]) == 4
    assert saved["kept"][1]["crop_box"] == [128, 0, 896, 768]  # living.jpg 1024x768, center crop
    assert "only 3 images" in report.summary() and "1 duplicate" in report.summary()


def test_without_a_captioner_the_caption_is_the_trigger(photos: Path, tmp_path: Path) -> None:
    report = prepare_dataset(photos, tmp_path / "ds", "minimalist style", None)
    for kept in report.kept:
        assert Path(kept.caption_file).read_text() == "minimalist style\n"


def test_an_existing_dataset_is_kept_unless_overwrite(photos: Path, tmp_path: Path) -> None:
    prepare_dataset(photos, tmp_path / "ds", "indochine style", None)
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare_dataset(photos, tmp_path / "ds", "indochine style", None)
    with pytest.raises(
        FileExistsError, match="10_indochine style"
    ):  # another repeats count: kohya trains both
        prepare_dataset(photos, tmp_path / "ds", "indochine style", None, PrepareOptions(repeats=5))
    report = prepare_dataset(
        photos, tmp_path / "ds", "indochine style", None, PrepareOptions(repeats=5, overwrite=True)
    )
    assert len(report.kept) == 3
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["5_indochine style", "prepare_report.json"]


def test_exif_rotation_and_transparency_are_handled(tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    photo(9, (800, 600)).save(rotated, exif=exif.tobytes())
    assert open_rgb(rotated).size == (600, 800)

    rgba = Image.new("RGBA", (600, 600), (255, 0, 0, 0))
    rgba.save(tmp_path / "clear.png")
    flat = open_rgb(tmp_path / "clear.png")
    assert flat.mode == "RGB" and flat.getpixel((10, 10)) == (255, 255, 255)


def test_dhash_sees_through_resizing_and_recompression(tmp_path: Path) -> None:
    original = photo(11, (1200, 900))
    original.resize((640, 480)).save(tmp_path / "small.jpg", quality=60)
    with Image.open(tmp_path / "small.jpg") as copy:
        assert hamming(dhash(original), dhash(copy)) <= 6
    assert hamming(dhash(original), dhash(photo(12, (1200, 900)))) > 12


def test_smart_crop_follows_the_detail(tmp_path: Path) -> None:
    image = Image.new("RGB", (1536, 512), (200, 200, 200))  # a plain wall ...
    image.paste(photo(13, (400, 512)), (1100, 0))  # ... with the furniture on the right
    left, top, right, bottom = smart_box(image)
    assert (top, bottom, right - left) == (0, 512, 512)
    assert left >= 1024 - 64
    assert center_box(1536, 512) == (512, 0, 1024, 512)
    portrait = Image.new("RGB", (512, 1536), (90, 90, 90))
    portrait.paste(photo(14, (512, 400)), (0, 0))
    assert smart_box(portrait)[1] <= 64


def test_smart_crop_is_used_when_asked(photos: Path, tmp_path: Path) -> None:
    report = prepare_dataset(photos, tmp_path / "ds", "x", None, PrepareOptions(crop="smart"))
    for kept in report.kept:
        left, top, right, bottom = kept.crop_box
        assert right - left == bottom - top == min(kept.original_size)


def test_subset_folder_name_follows_sd_scripts() -> None:
    assert subset_dir_name(10, "indochine style") == "10_indochine style"
    assert subset_dir_name(5, "  a/b  c ") == "5_a b c"
    with pytest.raises(ValueError):
        subset_dir_name(0, "x")
    with pytest.raises(ValueError):
        subset_dir_name(3, "  ")


# --- the real BLIP path, on the tiny model --------------------------------------------------------------


def test_cli_with_the_tiny_blip(photos: Path, tmp_path: Path, tiny_blip: Path, capsys) -> None:
    out = tmp_path / "ds"
    args = [
        str(photos), str(out), "--style", "minimalist", "--repeats", "8",
        "--caption-model", str(tiny_blip), "--device", "cpu", "--batch-size", "2",
        "--max-new-tokens", "3", "--num-beams", "1",
    ]  # fmt: skip
    assert main(args) == 0
    assert "3 kept, 4 rejected" in capsys.readouterr().out
    captions = [p.read_text() for p in sorted((out / "8_minimalist style").glob("*.txt"))]
    assert len(captions) == 3
    for caption in captions:
        trigger, _, blip = caption.strip().partition(", ")
        assert trigger == "minimalist style" and 1 <= len(blip.split()) <= 3


def test_cli_errors(photos: Path, tmp_path: Path) -> None:
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "o"), "--trigger", "x", "--no-captions"]) == 2
    assert main([str(photos), str(tmp_path / "o"), "--style", "japandi", "--no-captions"]) == 2
    assert (
        main([str(photos), str(tmp_path / "o"), "--style", "none", "--no-captions"]) == 2
    )  # no trigger words
    missing_model = str(tmp_path / "no-such-model")
    assert main([str(photos), str(tmp_path / "o2"), "--trigger", "x", "--caption-model", missing_model]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), str(tmp_path / "o3"), "--trigger", "x", "--no-captions"]) == 1


def test_caption_settings_default_to_blip_large() -> None:
    assert CaptionSettings().model_id == "Salesforce/blip-image-captioning-large"
