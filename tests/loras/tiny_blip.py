"""A tiny, randomly initialised BLIP captioning model saved like a Hugging Face checkpoint.

No weights can be downloaded here, so the tests point the real captioning code (`from_pretrained` on a
model id) at a folder holding this ~50k-parameter model, its BERT tokenizer (vocab written here) and a
32×32 image processor. Captions are random words: the tests check plumbing, not content.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor

try:  # transformers 5 without torchvision: the PIL-backed processor, and no fallback notice
    from transformers import BlipImageProcessorPil as ImageProcessor
except ImportError:  # pragma: no cover - transformers 4.x
    from transformers import BlipImageProcessor as ImageProcessor

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
WORDS = [
    "a",
    "room",
    "with",
    "chair",
    "table",
    "lamp",
    "wooden",
    "white",
    "living",
    "sofa",
    "of",
    "photography",
]
VOCAB = SPECIAL + WORDS
IMAGE_SIZE = 32


def build_tiny_blip(folder: Path, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizer(str(vocab_file), bos_token="[DEC]")
    processor = BlipProcessor(
        image_processor=ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}), tokenizer=tokenizer
    )
    ids = {token: i for i, token in enumerate(VOCAB)}
    config = BlipConfig(
        text_config={
            "vocab_size": len(VOCAB), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "max_position_embeddings": 64, "bos_token_id": ids["[DEC]"],
            "sep_token_id": ids["[SEP]"], "eos_token_id": ids["[SEP]"], "pad_token_id": ids["[PAD]"],
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "image_size": IMAGE_SIZE, "patch_size": 8,
        },
        projection_dim=32,
        image_text_hidden_size=32,
    )  # fmt: skip
    torch.manual_seed(seed)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
