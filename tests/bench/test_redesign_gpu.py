"""bench.redesign_gpu against the emulator: every stage of the three photo templates timed, the VRAM read,
each graph accepted as sent; and every node of each graph counted in exactly one stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import redesign_gpu
from contract.templates import builtin_declarations
from tests.support.comfy import NEEDS_EMULATOR, REAL_COMFYUI, start_emulator

ROOT = Path(__file__).resolve().parents[2]
LOADERS = {"4", "10", "23"}  # checkpoint, LoRA, ControlNet: loaded by the first run, then cached


@pytest.mark.parametrize("template", redesign_gpu.TEMPLATES)
def test_every_node_of_each_graph_is_in_exactly_one_stage(template: str) -> None:
    graph = builtin_declarations(ROOT / "contract" / "workflows")[template].graph
    stages = redesign_gpu.STAGES[template]
    counted = [node for nodes in stages.values() for node in nodes]
    assert sorted(counted) == sorted(graph)  # none left to "other", none in two stages, none unknown


@pytest.mark.skipif(bool(REAL_COMFYUI), reason=NEEDS_EMULATOR)
def test_it_reports_each_stage_and_the_peak_vram(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emu = start_emulator(tmp_path / "comfyui", step_ms=1)
    try:
        out = tmp_path / "figures.json"
        argv = [emu.url, "--template", "all", "--runs", "1", "--style", "minimalist", "--json", str(out)]
        assert redesign_gpu.main(argv) == 0
    finally:
        emu.kill()
    figures = json.loads(out.read_text())
    assert set(figures) == set(redesign_gpu.TEMPLATES)
    for template, values in figures.items():
        stages = values["mean_stages_s"]
        assert set(stages) == {"preprocess", "sample", "decode", "paste back", "save"}, template
        assert all(seconds > 0 for seconds in stages.values()), template
        assert values["peak_vram"]["device_used_bytes"] > 0  # the emulator's /system_stats: total - free
        timed = set(values["timed"][0]["nodes_s"])
        assert not LOADERS & timed, template  # loaders run once, then ComfyUI's cache
        assert {"11", "13", "30", "33", "3", "8", "40", "9"} <= timed, template  # new pictures: all again
    assert LOADERS <= set(figures["restyle"]["warmup"]["nodes_s"])  # the first warm-up loaded them
    printed = capsys.readouterr().out
    assert all(f"{t} template" in printed for t in redesign_gpu.TEMPLATES) and "peak VRAM in use" in printed
