"""The photo templates (restyle, stage, edit) on a real GPU host: time of each stage and peak VRAM.

    python -m bench.redesign_gpu http://gpu-host:8188 [--template restyle|stage|edit|all] [--runs 3]
        [--style none] [--json out.json]

Sends each built-in graph (contract/workflows/{restyle,stage,edit}.json, filled by its template as the
backend fills it) straight to the ComfyUI instance, `--runs` times with different seeds after one warm-up run
(model loads). Its pictures are the tests' room photo, 640x480, rendered at 683x512, and a painted mask
(tests/support/redesign.py), processed as the backend stores uploads of role photo and mask (the mask's
alpha is 1 - mask, for LoadImage's MASK output) and uploaded through `POST /upload/image`: restyle keeps a
window, stage furnishes the floor, edit repaints a region. Read from ComfyUI itself (bench/comfy_timing.py):

- each node's time from the `/ws` `executing` messages, summed by stage: preprocess (checkpoint, LoRA and
  prompts; photo and mask at the render size; depth and straight lines or the inpaint ControlNet's masked
  photo; the ControlNets loaded and applied; the mask grown or inverted), sample (the photo encoded to a
  latent, or the inpaint conditioning, and the sampler), decode, paste back (the kept pixels composited
  back onto the render, the mask pass drawn), save (the render and the two passes);
- peak VRAM in use: `/system_stats` polled during the run (the whole card, and what PyTorch holds).

What a designer waits for beyond these is `bench.redesign_job`'s added latency. Nothing is stored anywhere
but the ComfyUI output folder. Runs against the emulator too (its figures are the emulator's, not a GPU's):
tests/bench/test_redesign_gpu.py does that.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from backend.config import Settings
from backend.images import process_mask, process_photo
from bench import comfy_timing
from bench.comfy_timing import upload
from contract.styles import load_manifest
from contract.templates import ImageRef, builtin_declarations, fill
from tests.support.redesign import painted_mask, room_photo

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ("restyle", "stage", "edit")
PHOTO_W, PHOTO_H = 640, 480  # rendered at 683x512: the default height, the photo's aspect
MASK_BOX = {  # the region each template's mask paints, as in tests/backend/test_redesign.py
    "restyle": (80, 80, 213, 240),  # keep the window
    "stage": (0, 330, PHOTO_W - 1, PHOTO_H - 1),  # the floor
    "edit": (300, 200, 500, 400),  # a region to repaint
}
MASK_INPUT = {"restyle": "keep_mask", "stage": "floor_mask", "edit": "mask"}
PROMPT = {"restyle": "japandi living room", "stage": "scandinavian sofa", "edit": "a green armchair"}
LIMITS = {
    "max_pixels": Settings.model_fields["upload_max_pixels"].default,
    "max_side": Settings.model_fields["upload_max_side"].default,
}

# What every graph has: checkpoint, LoRA and prompts; the photo and the mask at the render size.
_MODELS_AND_PROMPTS = frozenset({"4", "10", "6", "7"})
_PHOTO_AND_MASK = frozenset({"11", "13", "30", "31", "32", "33"})
_TAIL: dict[str, frozenset[str]] = {
    "decode": frozenset({"8"}),
    "paste back": frozenset({"40", "42"}),  # the composite onto the photo; the mask drawn for its pass
    "save": frozenset({"9", "41", "43"}),  # the render, the photo at render size, the mask pass
}
STAGES: dict[str, dict[str, frozenset[str]]] = {
    # depth (21) and straight lines (22) through two ControlNets; img2img at `creativity`; the keep mask
    # inverted (34) so the render shows everywhere but there
    "restyle": {
        "preprocess": _MODELS_AND_PROMPTS | _PHOTO_AND_MASK | {"21", "22", "23", "24", "25", "26", "34"},
        "sample": frozenset({"12", "3"}),
        **_TAIL,
    },
    # the same ControlNets; the floor mask grown upwards (35) for tall furniture, inpaint conditioning (36)
    "stage": {
        "preprocess": _MODELS_AND_PROMPTS | _PHOTO_AND_MASK | {"21", "22", "23", "24", "25", "26", "35"},
        "sample": frozenset({"36", "3"}),
        **_TAIL,
    },
    # the inpaint ControlNet on the masked photo (21); the mask grown by a margin (35), inpaint conditioning
    "edit": {
        "preprocess": _MODELS_AND_PROMPTS | _PHOTO_AND_MASK | {"21", "23", "25", "35"},
        "sample": frozenset({"36", "3"}),
        **_TAIL,
    },
}


def stage_of(template: str, node_id: str) -> str:
    return comfy_timing.group_of(STAGES[template], node_id)


def redesign_graph(
    http: httpx.Client, template: str, checkpoint: str, style: str, seed: int, job_id: str
) -> dict[str, Any]:
    """The template's graph as the backend fills it for a job, its pictures uploaded to ComfyUI."""
    decl = builtin_declarations(ROOT / "contract" / "workflows", checkpoint=checkpoint)[template]
    photo = process_photo(room_photo(PHOTO_W, PHOTO_H), **LIMITS).png
    mask = process_mask(painted_mask(PHOTO_W, PHOTO_H, MASK_BOX[template]), **LIMITS).png
    mask_key = MASK_INPUT[template]
    images = {
        # named per run: ComfyUI caches a node whose inputs are unchanged, and the preprocessing is timed too
        "photo": ImageRef(upload(http, photo, f"bench-{template}-photo-{seed}.png"), False),
        mask_key: ImageRef(upload(http, mask, f"bench-{template}-mask-{seed}.png"), False),
    }
    values: dict[str, Any] = {"photo": "p", mask_key: "m", "prompt": PROMPT[template], "style": style,
                              "seed": seed}  # fmt: skip
    if template == "restyle":
        values["creativity"] = 0.55
    return fill(decl, values, load_manifest(), images, job_id)


def measure(base_url: str, template: str, runs: int, checkpoint: str, style: str) -> dict[str, Any]:
    def graph_for(http: httpx.Client, seed: int, job_id: str) -> dict[str, Any]:
        return redesign_graph(http, template, checkpoint, style, seed, job_id)

    return comfy_timing.measure(base_url, runs, graph_for, STAGES[template], "stages")


def report(template: str, values: dict[str, Any]) -> str:
    return comfy_timing.report(f"{template} template", values, STAGES[template], "stages")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.redesign_gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="the ComfyUI instance, e.g. http://gpu-host:8188")
    p.add_argument("--template", choices=[*TEMPLATES, "all"], default="all")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--checkpoint", default="interiordesignsuperm_v2.safetensors")
    p.add_argument("--style", default="none", help="a style id of loras/styles.toml")
    p.add_argument("--json", type=Path, help="also write the figures here, by template")
    args = p.parse_args(argv)
    templates = TEMPLATES if args.template == "all" else (args.template,)
    figures: dict[str, Any] = {}
    for template in templates:
        figures[template] = measure(args.url, template, args.runs, args.checkpoint, args.style)
        sys.stdout.write(report(template, figures[template]) + "\n")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
