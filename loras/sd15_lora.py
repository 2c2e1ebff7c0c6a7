"""What a kohya sd-scripts (`networks.lora`) LoRA for Stable Diffusion 1.5 contains: every module name and
the input/output size and kernel of the layer it patches.

Derived from the SD 1.5 U-Net and CLIP ViT-L/14 text encoder as sd-scripts' `networks/lora.py` walks
them (`Transformer2DModel` children; with `conv_dim` also `ResnetBlock2D`, `Downsample2D`,
`Upsample2D`; `CLIPAttention`/`CLIPMLP` children), names as `lora_unet_<diffusers path>` /
`lora_te_<path>` with dots turned into underscores. Counts: 192 U-Net attention modules, 86 more with
`conv_dim`, 72 text-encoder modules. `validate.py` checks files against this table and the tests write
LoRAs from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Literal

Group = Literal["unet", "unet_conv", "te"]

CROSS_ATTENTION_DIM = 768  # CLIP ViT-L/14 hidden size: the K/V input of every attn2
TIME_EMBED_DIM = 1280
TE_HIDDEN, TE_MLP, TE_LAYERS = 768, 3072, 12
# (block, number of Transformer2DModels, channels)
ATTENTION_BLOCKS = (
    ("down_blocks_0", 2, 320),
    ("down_blocks_1", 2, 640),
    ("down_blocks_2", 2, 1280),
    ("mid_block", 1, 1280),
    ("up_blocks_1", 3, 1280),
    ("up_blocks_2", 3, 640),
    ("up_blocks_3", 3, 320),
)
# (block, (in, out) channels of each ResnetBlock2D); up blocks see the skip connection concatenated.
RESNET_BLOCKS = (
    ("down_blocks_0", ((320, 320), (320, 320))),
    ("down_blocks_1", ((320, 640), (640, 640))),
    ("down_blocks_2", ((640, 1280), (1280, 1280))),
    ("down_blocks_3", ((1280, 1280), (1280, 1280))),
    ("mid_block", ((1280, 1280), (1280, 1280))),
    ("up_blocks_0", ((2560, 1280), (2560, 1280), (2560, 1280))),
    ("up_blocks_1", ((2560, 1280), (2560, 1280), (1920, 1280))),
    ("up_blocks_2", ((1920, 640), (1280, 640), (960, 640))),
    ("up_blocks_3", ((960, 320), (640, 320), (640, 320))),
)
SAMPLER_CONVS = (
    ("down_blocks_0_downsamplers_0_conv", 320),
    ("down_blocks_1_downsamplers_0_conv", 640),
    ("down_blocks_2_downsamplers_0_conv", 1280),
    ("up_blocks_0_upsamplers_0_conv", 1280),
    ("up_blocks_1_upsamplers_0_conv", 1280),
    ("up_blocks_2_upsamplers_0_conv", 640),
)
GROUP_SIZES = {"unet": 192, "unet_conv": 86, "te": 72}


@dataclass(frozen=True)
class ModuleSpec:
    """One patched layer: `kernel` 0 for Linear, 1 or 3 for a k×k Conv2d."""

    name: str
    in_features: int
    out_features: int
    kernel: int
    group: Group

    @property
    def is_conv3x3(self) -> bool:
        """3×3 convs take `conv_dim`/`conv_alpha`; Linear and 1×1 convs take `network_dim`/`network_alpha`."""
        return self.kernel == 3

    def down_shape(self, rank: int) -> tuple[int, ...]:
        if self.kernel:
            return (rank, self.in_features, self.kernel, self.kernel)
        return (rank, self.in_features)

    def up_shape(self, rank: int) -> tuple[int, ...]:
        return (self.out_features, rank, 1, 1) if self.kernel else (self.out_features, rank)


def _attention_modules(block: str, index: int, c: int) -> Iterator[ModuleSpec]:
    prefix = f"lora_unet_{block}_attentions_{index}"
    t = f"{prefix}_transformer_blocks_0"
    yield ModuleSpec(f"{prefix}_proj_in", c, c, 1, "unet")
    for attn, kv_in in (("attn1", c), ("attn2", CROSS_ATTENTION_DIM)):
        yield ModuleSpec(f"{t}_{attn}_to_q", c, c, 0, "unet")
        yield ModuleSpec(f"{t}_{attn}_to_k", kv_in, c, 0, "unet")
        yield ModuleSpec(f"{t}_{attn}_to_v", kv_in, c, 0, "unet")
        yield ModuleSpec(f"{t}_{attn}_to_out_0", c, c, 0, "unet")
    yield ModuleSpec(f"{t}_ff_net_0_proj", c, 8 * c, 0, "unet")  # GEGLU: value and gate
    yield ModuleSpec(f"{t}_ff_net_2", 4 * c, c, 0, "unet")
    yield ModuleSpec(f"{prefix}_proj_out", c, c, 1, "unet")


def _resnet_modules(block: str, index: int, c_in: int, c_out: int) -> Iterator[ModuleSpec]:
    prefix = f"lora_unet_{block}_resnets_{index}"
    yield ModuleSpec(f"{prefix}_conv1", c_in, c_out, 3, "unet_conv")
    yield ModuleSpec(f"{prefix}_time_emb_proj", TIME_EMBED_DIM, c_out, 0, "unet_conv")
    yield ModuleSpec(f"{prefix}_conv2", c_out, c_out, 3, "unet_conv")
    if c_in != c_out:
        yield ModuleSpec(f"{prefix}_conv_shortcut", c_in, c_out, 1, "unet_conv")


def _text_encoder_modules() -> Iterator[ModuleSpec]:
    for n in range(TE_LAYERS):
        prefix = f"lora_te_text_model_encoder_layers_{n}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            yield ModuleSpec(f"{prefix}_self_attn_{proj}", TE_HIDDEN, TE_HIDDEN, 0, "te")
        yield ModuleSpec(f"{prefix}_mlp_fc1", TE_HIDDEN, TE_MLP, 0, "te")
        yield ModuleSpec(f"{prefix}_mlp_fc2", TE_MLP, TE_HIDDEN, 0, "te")


def _all_modules() -> Iterator[ModuleSpec]:
    for block, count, channels in ATTENTION_BLOCKS:
        for i in range(count):
            yield from _attention_modules(block, i, channels)
    for block, resnets in RESNET_BLOCKS:
        for i, (c_in, c_out) in enumerate(resnets):
            yield from _resnet_modules(block, i, c_in, c_out)
    for name, channels in SAMPLER_CONVS:
        yield ModuleSpec(f"lora_unet_{name}", channels, channels, 3, "unet_conv")
    yield from _text_encoder_modules()


@cache
def sd15_modules() -> dict[str, ModuleSpec]:
    """Every module a kohya SD 1.5 LoRA may hold, by name."""
    return {m.name: m for m in _all_modules()}


def modules_in(*groups: Group) -> list[ModuleSpec]:
    """The modules of the given groups, in the table's order."""
    return [m for m in sd15_modules().values() if m.group in groups]
