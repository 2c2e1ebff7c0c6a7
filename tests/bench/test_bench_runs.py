"""Every benchmark still runs end to end with tiny sizes (`python -m bench --quick`) and writes its figures
to the JSON file. Nothing here asserts a timing: only that each figure was measured, with its baseline
and target beside it, and the facts a benchmark checks on the way (no job claimed twice, every job of a
backlog run...)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import main
from bench.sizes import QUICK

pytestmark = pytest.mark.slow

DBS = ("sqlite", "postgresql")


def run_bench(tmp_path: Path, bench: str, *args: str) -> dict[str, Any]:
    """`python -m bench --quick --only <bench>`: its figures by key, each with what a row needs."""
    out = tmp_path / "results.json"
    assert main(["--quick", "--only", bench, "--out", str(out), *args]) == 0
    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["machine"]["cpus"] >= 1 and doc["options"]["sizes"]["latency_jobs"] == QUICK.latency_jobs
    for figure in doc["figures"]:
        assert figure["measured"] and figure["baseline"] and figure["target"], figure
        assert figure["passed"] in (True, False, None) and figure["values"]["run"]["bench"] == bench
    return {f["key"]: f for f in doc["figures"]}


def test_latency_pairs_every_api_job_with_a_direct_one(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "latency")
    assert set(figures) == {"latency.added", "latency.first_progress"}
    added = figures["latency.added"]["values"]
    assert added["added_s"]["n"] == added["api_total_s"]["n"] == QUICK.latency_jobs
    # every job ran its sampler steps (55 ms each): nothing was answered from ComfyUI's cache
    assert added["direct_total_s"]["p50"] >= QUICK.latency_steps * 0.055
    first = figures["latency.first_progress"]["values"]
    assert first["direct_s"]["p50"] >= 0.055 and first["target_s"] > 0.055


def test_idle_gap_measures_every_gap_of_the_backlog(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "idle_gap")
    assert set(figures) == {"idle_gap.prequeue"}  # --quick skips the COMFY_PREQUEUE=0 run
    values = figures["idle_gap.prequeue"]["values"]
    assert values["gap_s"]["n"] == values["direct_gap_s"]["n"] == QUICK.idle_backlog - 1


def test_throughput_with_wrk(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "throughput", "--dbs", "sqlite")
    assert set(figures) == {"throughput.post.sqlite", "throughput.get.sqlite"}
    loads = figures["throughput.post.sqlite"]["values"]
    expected_tool = "wrk" if loads["post"]["tool"] == "wrk" else "locust"  # locust where wrk is missing
    assert {loads[k]["tool"] for k in ("healthz", "post", "get")} == {expected_tool}
    assert loads["post"]["ok_per_s"] > 0 and loads["get"]["ok_per_s"] > 0


def test_throughput_falls_back_to_locust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_LOADGEN", "locust")
    figures = run_bench(tmp_path, "throughput", "--dbs", "postgresql")
    assert set(figures) == {"throughput.post.postgresql", "throughput.get.postgresql"}
    loads = figures["throughput.get.postgresql"]["values"]
    assert {loads[k]["tool"] for k in ("healthz", "post", "get")} == {"locust"}
    assert loads["post"]["requests"] > 0 and loads["get"]["ok_per_s"] > 0


def test_claim_rate_checks_that_no_job_was_claimed_twice(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "claim_rate")
    expected = {f"claim_rate.{db}.{n}" for db in DBS for n in QUICK.claim_dispatchers}
    expected |= {f"claim_rate.{db}.{QUICK.claim_dispatchers[0]}.slots1" for db in DBS}
    assert set(figures) == expected
    for figure in figures.values():
        r = figure["values"]
        assert r["claimed"] == r["db_claimed_events"] == r["db_running"] == QUICK.claim_backlog
        assert r["reported_twice"] == r["db_jobs_claimed_twice"] == 0 and r["drained"]
        assert sum(r["per_dispatcher"].values()) == QUICK.claim_backlog
        assert len(r["per_dispatcher"]) == r["dispatchers"] and r["bare_tx_per_s"] > 0


def test_lora_switches_count_the_emulators_loads_in_both_orders(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "lora_switches")
    assert set(figures) == {"lora_switches.affinity"}
    r = figures["lora_switches.affinity"]["values"]
    for order in ("affinity", "naive"):
        assert sum(r[order]["per_instance"]) == QUICK.lora_jobs
        # two of the three styles load a LoRA: at least one load, at most one per job
        assert 1 <= r[order]["lora_loads"] <= QUICK.lora_jobs


def test_memory_reads_both_processes_at_the_mark_and_the_end(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "memory")
    assert set(figures) == {"memory.api_worker_max", "memory.dispatcher"}
    values = figures["memory.dispatcher"]["values"]
    for reading in ("mark", "end"):
        assert values[reading]["dispatcher"] > 10 and values[reading]["api_worker_max"] > 10  # MiB
        assert values[reading]["api_workers_sum"] >= values[reading]["api_worker_max"]


def test_sagemaker_path_pairs_every_overflow_job_with_a_direct_one(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "sagemaker")
    assert set(figures) == {"sagemaker.added"}
    values = figures["sagemaker.added"]["values"]
    assert values["added_s"]["n"] == values["sagemaker_total_s"]["n"] == QUICK.sagemaker_jobs
    # both paths rendered the steps for real (55 ms each) on the one emulator
    assert values["direct_total_s"]["p50"] >= QUICK.sagemaker_steps * 0.055
    assert values["sagemaker_total_s"]["p50"] >= QUICK.sagemaker_steps * 0.055


def test_wait_result_compares_every_waiting_render_with_a_polled_one(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "wait_result")
    assert set(figures) == {"wait_result.prefer_wait", "wait_result.text2image"}
    for figure in figures.values():
        values = figure["values"]
        assert values["added_s"]["n"] == values["total_s"]["n"] == QUICK.latency_jobs
        # every render ran its sampler steps (55 ms each), and the polling client polled
        assert values["total_s"]["p50"] >= QUICK.latency_steps * 0.055
        assert values["poll_requests"]["p50"] >= 2


def test_template_validation_times_every_run_of_the_300_node_graph(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "template_validation")
    values = figures["template_validation.300_nodes"]["values"]
    assert values["nodes"] == 300 and values["validation_s"]["n"] == QUICK.template_runs
    assert values["validation_s"]["p95"] >= values["validation_s"]["p50"] > 0


def test_template_jobs_time_each_body_against_the_legacy_one(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "template_jobs", "--dbs", "sqlite")
    assert set(figures) == {"template_jobs.template_added.sqlite", "template_jobs.custom_added.sqlite"}
    values = figures["template_jobs.custom_added.sqlite"]["values"]
    requests = values["requests_s"]
    assert {k: v["n"] for k, v in requests.items()} == dict.fromkeys(
        ("legacy", "template", "custom"), QUICK.template_job_requests
    )
    assert requests["legacy"]["p50"] > 0
    assert values["added_s"]["custom"]["p50"] == requests["custom"]["p50"] - requests["legacy"]["p50"]


def test_product_job_pairs_each_render_with_its_emulated_gpu_time(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "product_job")
    values = figures["product_job.added"]["values"]
    assert values["jobs"] == QUICK.product_jobs
    assert values["gpu_s"]["p50"] > 0 and values["total_s"]["p50"] > values["gpu_s"]["p50"]
    assert values["added_s"]["p50"] > 0


def test_redesign_job_pairs_each_render_of_each_template_with_its_emulated_gpu_time(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "redesign_job")
    assert set(figures) == {"redesign_job.restyle", "redesign_job.stage", "redesign_job.edit"}
    for key, figure in figures.items():
        values = figure["values"]
        assert (
            values["template"] == key.removeprefix("redesign_job.") and values["jobs"] == QUICK.redesign_jobs
        )
        assert values["added_s"]["n"] == values["gpu_s"]["n"] == QUICK.redesign_jobs
        assert values["gpu_s"]["p50"] > 0 and values["total_s"]["p50"] > values["gpu_s"]["p50"]
        assert values["added_s"]["p50"] > 0


def test_preview_latency_matches_every_received_preview_to_the_frame_sent(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "preview_latency")
    assert set(figures) == {"preview_latency.first", "preview_latency.every"}
    values = figures["preview_latency.first"]["values"]
    assert values["first_s"]["n"] == QUICK.latency_jobs  # every job's stream got a preview
    assert values["every_s"]["n"] >= values["first_s"]["n"]
    assert 0 < values["first_s"]["p50"] < 5  # a frame's own send time: received after it, not long after
