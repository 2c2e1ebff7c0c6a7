"""Kohya SD 1.5 LoRA files for tests: well-formed ones at a tiny rank, and the tools to break them.

The module names and layer sizes come from `loras.sd15_lora`; `test_validate.py` checks that table
against independent facts (counts, a few known layer sizes) so the fixture is not circular.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from loras.sd15_lora import Group, modules_in


def lora_tensors(
    rank: int = 1,
    groups: tuple[Group, ...] = ("unet", "te"),
    alpha: float = 1.0,
    conv_rank: int = 1,
    dtype: torch.dtype = torch.float16,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """What sd-scripts' LoRANetwork.save_weights would write, with small random weights."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, torch.Tensor] = {}
    for m in modules_in(*groups):
        r = conv_rank if m.is_conv3x3 else rank
        tensors[f"{m.name}.lora_down.weight"] = _random(rng, m.down_shape(r), dtype)
        tensors[f"{m.name}.lora_up.weight"] = _random(rng, m.up_shape(r), dtype)
        tensors[f"{m.name}.alpha"] = torch.tensor(alpha, dtype=dtype)
    return tensors


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(rng.normal(0.0, 0.01, size=shape).astype(np.float32)).to(dtype)


def kohya_metadata(rank: int = 1, alpha: float = 1.0, **extra: str) -> dict[str, str]:
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(float(alpha)),
        "ss_base_model_version": "sd_v1",
        "ss_v2": "False",
        "ss_output_name": "indochine_v1",
        "modelspec.architecture": "stable-diffusion-v1/lora",
    }
    meta.update(extra)
    return meta


def write_lora(
    path: Path,
    tensors: dict[str, torch.Tensor] | None = None,
    metadata: dict[str, str] | None = None,
    with_hash: bool = True,
) -> Path:
    """Save like sd-scripts: tensors, string metadata, and sshs_model_hash over the tensor bytes."""
    tensors = lora_tensors() if tensors is None else tensors
    metadata = kohya_metadata() if metadata is None else dict(metadata)
    save_file(tensors, str(path), metadata=metadata)
    if with_hash:
        metadata["sshs_model_hash"] = tensor_bytes_sha256(path)
        save_file(tensors, str(path), metadata=metadata)
    return path


def tensor_bytes_sha256(path: Path) -> str:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + n :]).hexdigest()


def rewrite_header(path: Path, header: dict[str, object]) -> None:
    """Replace a file's JSON header by hand (what safetensors' writer would refuse to produce)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def read_header_json(path: Path) -> dict[str, object]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return dict(json.loads(data[8 : 8 + n]))
