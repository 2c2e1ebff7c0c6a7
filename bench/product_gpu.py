"""The product template on a real GPU host: time of each pass and peak VRAM, read from ComfyUI itself.

    python -m bench.product_gpu http://gpu-host:8188 [--runs 3] [--style none] [--json out.json]

Sends the built-in `product` graph (contract/workflows/product.json, filled by the template as the backend
fills it, with the test pictures of tests/support/product.py uploaded through `POST /upload/image`) straight
to the ComfyUI instance, `--runs` times with different seeds after one warm-up run (model loads), and reads
(bench/comfy_timing.py):

- each node's time from the `/ws` `executing` messages, summed by pass: preprocess (cut-out mask, depth,
  edges, IPAdapter and ControlNet set-up), pass 1 (inpaint encode, draft sampler, decode), pass 2
  (re-encode, refine 1 at 0.4, decode), pass 3 (re-encode, refine 2 at 0.2, decode, paste back), upscale
  (x4 to 2048x2048), save;
- peak VRAM in use: `/system_stats` polled during the run (the whole card, and what PyTorch holds).

Nothing is stored anywhere but the ComfyUI output folder. Runs against the emulator too (its figures are
the emulator's, not a GPU's): tests/bench/test_product_gpu.py does that.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from bench import comfy_timing
from bench.comfy_timing import upload
from contract.styles import load_manifest
from contract.templates import ImageRef, builtin_declarations, fill
from tests.support.product import composition_png, product_png, style_photo_png

ROOT = Path(__file__).resolve().parents[1]
PASSES: dict[str, frozenset[str]] = {
    "preprocess": frozenset({"20", "21", "22", "23", "24", "25", "30", "31", "40", "41", "42", "43", "44",
                             "50", "51", "52", "53", "4", "10", "6", "7", "32"}),
    "pass 1 (draft)": frozenset({"60", "3", "61"}),
    "pass 2 (refine 1)": frozenset({"63", "64", "65", "66"}),
    "pass 3 (refine 2)": frozenset({"68", "69", "70", "71", "72"}),
    "upscale x4": frozenset({"80", "81"}),
    "save": frozenset({"9", "62", "67", "73"}),
}  # fmt: skip


def pass_of(node_id: str) -> str:
    return comfy_timing.group_of(PASSES, node_id)


def product_graph(http: httpx.Client, checkpoint: str, style: str, seed: int, job_id: str) -> dict[str, Any]:
    decl = builtin_declarations(ROOT / "contract" / "workflows", checkpoint=checkpoint)["product"]
    images = {
        # named per run: ComfyUI caches a node whose inputs are unchanged, and the preprocessing is timed too
        "product": ImageRef(upload(http, product_png(), f"bench-product-{seed}.png"), False),
        "composition": ImageRef(upload(http, composition_png(), f"bench-composition-{seed}.png")),
        "style_photo": ImageRef(upload(http, style_photo_png(), f"bench-style-{seed}.png"), False),
    }
    values = {"product": "p", "composition": "c", "style_photo": "s", "prompt": "a sunlit living room",
              "style": style, "seed": seed}  # fmt: skip
    return fill(decl, values, load_manifest(), images, job_id)


def measure(base_url: str, runs: int, checkpoint: str, style: str) -> dict[str, Any]:
    def graph_for(http: httpx.Client, seed: int, job_id: str) -> dict[str, Any]:
        return product_graph(http, checkpoint, style, seed, job_id)

    return comfy_timing.measure(base_url, runs, graph_for, PASSES, "passes")


def report(values: dict[str, Any]) -> str:
    return comfy_timing.report("product template", values, PASSES, "passes")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.product_gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="the ComfyUI instance, e.g. http://gpu-host:8188")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--checkpoint", default="interiordesignsuperm_v2.safetensors")
    p.add_argument("--style", default="none", help="a style id of loras/styles.toml")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    values = measure(args.url, args.runs, args.checkpoint, args.style)
    sys.stdout.write(report(values) + "\n")
    if args.json:
        args.json.write_text(json.dumps(values, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
