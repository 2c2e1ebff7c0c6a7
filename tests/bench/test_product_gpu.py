"""bench.product_gpu against the emulator: every pass timed, the VRAM read, the graph accepted as sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import product_gpu
from tests.support.comfy import NEEDS_EMULATOR, REAL_COMFYUI, start_emulator


@pytest.mark.skipif(bool(REAL_COMFYUI), reason=NEEDS_EMULATOR)
def test_it_reports_each_pass_and_the_peak_vram(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emu = start_emulator(tmp_path / "comfyui", step_ms=1)
    try:
        out = tmp_path / "figures.json"
        assert product_gpu.main([emu.url, "--runs", "1", "--style", "minimalist", "--json", str(out)]) == 0
    finally:
        emu.kill()
    values = json.loads(out.read_text())
    passes = values["mean_passes_s"]
    assert {"preprocess", "pass 1 (draft)", "pass 2 (refine 1)", "pass 3 (refine 2)", "upscale x4"} <= set(
        passes
    )
    assert "other" not in passes  # every node of the graph belongs to a pass
    assert all(seconds > 0 for seconds in passes.values())
    assert values["peak_vram"]["device_used_bytes"] > 0  # the emulator's /system_stats: total - free
    warm, timed = set(values["warmup"]["nodes_s"]), set(values["timed"][0]["nodes_s"])
    assert {"4", "10", "31", "51", "52", "80"} <= warm - timed  # loaders run once, then ComfyUI's cache
    assert {"20", "30", "3", "65", "70", "81"} <= timed  # new pictures: preprocessing and passes run again
    printed = capsys.readouterr().out
    assert "pass 3 (refine 2)" in printed and "peak VRAM in use" in printed
