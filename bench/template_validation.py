"""Template validation time: check_graph + needs + the declared-input checks of a generated 300-node graph
against an `/object_info` as the emulator serves it (ComfyUI 0.3.64's core specs), the work the API does
per instance when a lead submits or publishes a template. The baseline is check_graph alone without
`/object_info` (the shape only). `python -m bench.template_validation` prints p50/p95 on its own.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench.report import Figure, ms, percentile
from bench.sizes import Sizes
from contract.templates import check_graph, declaration_needs, parse_declaration, validate
from mlserver.emulator.nodes import CATALOGUE, object_info

NODES = 300
TARGET_P95_S = 0.1  # a lead waits on the report; several instances are checked one after another
CHECKPOINT = "interiordesignsuperm_v2.safetensors"
FILES: dict[tuple[str, ...], list[str]] = {
    ("models", "checkpoints"): [CHECKPOINT],
    ("models", "loras"): [f"style_{i}.safetensors" for i in range(40)],
    ("vae_names",): ["pixel_space"],
}


def recorded_object_info() -> dict[str, Any]:
    return {name: object_info(node, lambda d: list(FILES.get(d, []))) for name, node in CATALOGUE.items()}


def _base() -> dict[str, Any]:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a room", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    }


def generated_declaration(nodes: int = NODES) -> dict[str, Any]:
    """A long multi-pass graph: each pass upscales the latent and samples it again; every 10th pass is
    decoded and saved. Inputs: the prompts, a seed and steps on the first 16 samplers."""
    graph, latent, n, samplers, saves = _base(), ["4", 0], 5, [], []
    while n + 4 <= nodes:
        up, sampler = str(n), str(n + 1)
        graph[up] = {
            "class_type": "LatentUpscaleBy",
            "inputs": {"samples": latent, "upscale_method": "area", "scale_by": 1.0},
        }
        graph[sampler] = {
            "class_type": "KSampler",
            "inputs": {"model": ["1", 0], "seed": 1, "steps": 4, "cfg": 7.0, "sampler_name": "euler",
                       "scheduler": "normal", "positive": ["2", 0], "negative": ["3", 0],
                       "latent_image": [up, 0], "denoise": 0.5},
        }  # fmt: skip
        samplers.append(sampler)
        latent, n = [sampler, 0], n + 2
        if len(samplers) % 10 == 0:
            graph[str(n)] = {"class_type": "VAEDecode", "inputs": {"samples": latent, "vae": ["1", 2]}}
            graph[str(n + 1)] = {
                "class_type": "SaveImage",
                "inputs": {"images": [str(n), 0], "filename_prefix": "x"},
            }
            saves.append(str(n + 1))
            n += 2
    while n <= nodes:  # pad with previews of the last latent
        graph[str(n)] = {"class_type": "VAEDecode", "inputs": {"samples": latent, "vae": ["1", 2]}}
        n += 1
    first = samplers[:16]
    inputs = [
        {"key": "prompt", "label": "Prompt", "kind": "long_text", "targets": [["2", "text"]],
         "required": True},
        {"key": "negative", "label": "Negative", "kind": "long_text", "targets": [["3", "text"]]},
        {"key": "seed", "label": "Seed", "kind": "seed", "targets": [[s, "seed"] for s in first]},
        {"key": "steps", "label": "Steps", "kind": "integer", "targets": [[s, "steps"] for s in first],
         "default": 4, "constraints": {"min": 1, "max": 50}},
    ]  # fmt: skip
    outputs = {
        "results": saves[-1:],
        "passes": [{"node": s, "label": f"Pass {i}"} for i, s in enumerate(saves[:-1])],
    }
    return {"name": "bench-300", "title": "300 nodes", "graph": graph, "inputs": inputs, "outputs": outputs}


def measure(runs: int) -> dict[str, Any]:
    info = recorded_object_info()
    decl = parse_declaration(generated_declaration())
    assert len(decl.graph) == NODES, len(decl.graph)
    full: list[float] = []
    shape: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        problems = validate(decl, info, style_ids=["none"])
        declaration_needs(decl, info)
        full.append(time.perf_counter() - start)
        start = time.perf_counter()
        check_graph(decl.graph)
        shape.append(time.perf_counter() - start)
        assert problems == [], problems[:3]
    return {
        "validation_s": {"p50": percentile(full, 50), "p95": percentile(full, 95), "n": runs},
        "shape_only_s": {"p50": percentile(shape, 50), "p95": percentile(shape, 95), "n": runs},
        "nodes": NODES,
        "target_p95_s": TARGET_P95_S,
    }


def run(work: Path, db: str, sizes: Sizes) -> list[Figure]:
    values = measure(sizes.template_runs)
    full, shape = values["validation_s"], values["shape_only_s"]
    return [
        Figure(
            key="template_validation.300_nodes",
            title=f"template validation of a {NODES}-node graph (check_graph + needs + inputs, one instance)",
            measured=f"p50 {ms(full['p50'])}, p95 {ms(full['p95'])}",
            baseline=f"shape only: p50 {ms(shape['p50'])}, p95 {ms(shape['p95'])}",
            target=f"p95 < {ms(TARGET_P95_S)}",
            passed=full["p95"] < TARGET_P95_S,
            values=values,
        )
    ]


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv else 200
    values = measure(runs)
    full, shape = values["validation_s"], values["shape_only_s"]
    sys.stdout.write(
        f"template validation, {NODES} nodes, {runs} runs: p50 {ms(full['p50'])}, p95 {ms(full['p95'])} "
        f"(shape only: p50 {ms(shape['p50'])}, p95 {ms(shape['p95'])})\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
