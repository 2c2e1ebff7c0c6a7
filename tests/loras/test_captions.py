"""captions.py: the real BLIP code path (from_pretrained on a model id) run on a tiny random BLIP."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from loras.captions import BlipCaptioner, CaptionSettings, clean_caption, kohya_caption, pick_device
from tests.loras.tiny_blip import WORDS


def images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (64 + 8 * i, 48), (40 * i, 120, 200 - 30 * i)) for i in range(n)]


@pytest.fixture(scope="module")
def captioner(tiny_blip: Path) -> BlipCaptioner:
    settings = CaptionSettings(
        model_id=str(tiny_blip), device="auto", batch_size=2, max_new_tokens=4, num_beams=1
    )
    return BlipCaptioner(settings)


def test_the_model_loads_from_a_model_id_on_the_best_device(captioner: BlipCaptioner) -> None:
    assert captioner.device == pick_device("auto")
    assert captioner.dtype == (torch.float16 if captioner.device.type == "cuda" else torch.float32)
    assert not captioner.model.training


def test_every_image_gets_one_caption_across_batches(captioner: BlipCaptioner) -> None:
    captions = captioner.caption(images(5))  # batches of 2, 2, 1
    assert len(captions) == 5
    for caption in captions:
        words = caption.split()
        assert 1 <= len(words) <= 4 and set(words) <= set(WORDS)
        assert caption == caption.lower() and "[" not in caption


def test_captions_do_not_depend_on_the_batch_size(tiny_blip: Path, captioner: BlipCaptioner) -> None:
    one_by_one = BlipCaptioner(
        CaptionSettings(model_id=str(tiny_blip), device="cpu", batch_size=1, max_new_tokens=4, num_beams=1)
    )
    assert one_by_one.caption(images(3)) == captioner.caption(images(3))


def test_a_conditional_prompt_is_not_left_in_the_caption(tiny_blip: Path) -> None:
    settings = CaptionSettings(
        model_id=str(tiny_blip), device="cpu", max_new_tokens=3, num_beams=2, prompt="a photography of"
    )
    [caption] = BlipCaptioner(settings).caption(images(1))
    assert caption and not caption.startswith("a photography of")


def test_no_images_no_work(captioner: BlipCaptioner) -> None:
    assert captioner.caption([]) == []


def test_a_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BlipCaptioner(CaptionSettings(model_id=str(tmp_path / "nothing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="cannot load the BLIP model"):
        BlipCaptioner(CaptionSettings(model_id=str(tmp_path / "empty"), local_files_only=True))


@pytest.mark.parametrize(
    ("raw", "prompt", "clean"),
    [
        ("arafed living room with a sofa", "", "living room with a sofa"),
        ("  A Photography of a   kitchen. ", "a photography of", "a kitchen"),
        ("there is a araffe chair in the room,", "", "there is a chair in the room"),
        ("", "", ""),
    ],
)
def test_clean_caption(raw: str, prompt: str, clean: str) -> None:
    assert clean_caption(raw, prompt) == clean


def test_kohya_caption_puts_the_trigger_first() -> None:
    assert kohya_caption("indochine style", "a living room") == "indochine style, a living room"
    assert kohya_caption("indochine style", "") == "indochine style"
    assert kohya_caption("", "a room") == "a room"
