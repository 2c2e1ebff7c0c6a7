"""Fixtures for the LoRA pipeline tests: a tiny BLIP on disk, a well-formed LoRA, a manifest copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from contract.styles import MANIFEST_PATH
from tests.loras.lora_factory import write_lora
from tests.loras.tiny_blip import build_tiny_blip


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder `BlipForConditionalGeneration.from_pretrained` loads: the model id the tests pass."""
    hf_logging.disable_progress_bar()
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


@pytest.fixture(scope="session")
def good_lora_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A complete kohya SD 1.5 LoRA (U-Net + text encoder, rank 1, fp16, sd-scripts metadata), ~1.3 MB."""
    return write_lora(tmp_path_factory.mktemp("lora") / "good.safetensors").read_bytes()


@pytest.fixture
def good_lora(tmp_path: Path, good_lora_bytes: bytes) -> Path:
    """A fresh copy the test may damage."""
    path = tmp_path / "indochine_v2.safetensors"
    path.write_bytes(good_lora_bytes)
    return path


@pytest.fixture
def manifest_copy(tmp_path: Path) -> Path:
    """The committed manifest, copied where a test may rewrite it."""
    folder = tmp_path / "manifest"
    folder.mkdir()
    return Path(shutil.copy(MANIFEST_PATH, folder / "styles.toml"))
