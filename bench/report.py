"""What a benchmark reports: `Figure` rows (measured, baseline, target, pass), percentiles, the printed
table, the machine description and the JSON file under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    """One row of the table: a measured figure beside its baseline from the same run."""

    key: str  # stable id, e.g. "latency.added"
    title: str  # what was measured, for people
    measured: str
    baseline: str
    target: str
    passed: bool | None  # None: informative only, no target
    values: dict[str, Any] = field(default_factory=dict)  # the numbers behind the strings, for the JSON


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def p50_p99(values: Sequence[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "n": len(values)}


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.2f} ms" if abs(value) < 10 else f"{value:.1f} ms"


def added_over_emulated(
    jobs: Sequence[tuple[str, float]], runs: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, float]]:
    """Jobs as (id, the client's seconds from POST to final) beside the emulator's run of each (its
    `/emulator/stats` runs by prompt id, a job's id being its prompt's): p50/p99 of the client's time
    (`total_s`), of the emulated GPU time (`gpu_s`, the run's start to end) and of their difference
    (`added_s`, what the studio adds)."""
    gpu = [runs[job_id]["ended_at"] - runs[job_id]["started_at"] for job_id, _ in jobs]
    total = [elapsed for _, elapsed in jobs]
    added = [t - g for t, g in zip(total, gpu, strict=True)]
    return {"total_s": p50_p99(total), "gpu_s": p50_p99(gpu), "added_s": p50_p99(added)}


def added_figure(key: str, title: str, values: dict[str, Any], added_p50_max_s: float) -> Figure:
    """The row for `added_over_emulated`'s figures (in `values`): what the studio adds at p50 and p99
    and the client's POST to `succeeded`, beside the emulated GPU time, against a p50 target."""
    added, gpu, total = values["added_s"], values["gpu_s"], values["total_s"]
    return Figure(
        key=key,
        title=title,
        measured=(
            f"added p50 {ms(added['p50'])}, p99 {ms(added['p99'])}; POST→succeeded p50 {ms(total['p50'])}"
        ),
        baseline=f"emulated GPU time p50 {ms(gpu['p50'])}, p99 {ms(gpu['p99'])}",
        target=f"added p50 <= {ms(added_p50_max_s)}",
        passed=added["p50"] <= added_p50_max_s,
        values=values,
    )


def one_line(figure: Figure) -> str:
    """A figure as one line, for a benchmark run alone (`python -m bench.<name>`)."""
    met = "informative" if figure.passed is None else "met" if figure.passed else "MISSED"
    return f"{figure.title}: {figure.measured}; {figure.baseline}; {figure.target}: {met}"


def machine() -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit,
    }


def table(figures: Sequence[Figure]) -> str:
    head = ("figure", "measured", "baseline", "target", "result")
    rows = [head] + [
        (f.title, f.measured, f.baseline, f.target, {True: "pass", False: "MISS", None: "-"}[f.passed])
        for f in figures
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(
    figures: Sequence[Figure],
    options: dict[str, Any],
    path: Path | None = None,
    started: datetime | None = None,
) -> Path:
    started = started or datetime.now(UTC)
    if path is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    doc = {
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "options": options,
        "figures": [asdict(f) for f in figures],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def run_alone(
    measure: Callable[[Path, str, int], dict[str, Any]],
    figures: Callable[[dict[str, Any]], list[Figure]],
    argv: Sequence[str],
) -> int:
    """`python -m bench.<name> [jobs] [sqlite|postgresql]`: one benchmark alone, its figures a line each."""
    n = int(argv[0]) if argv else 10
    db = argv[1] if len(argv) > 1 else "sqlite"
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        values = measure(Path(tmp), db, n)
    for figure in figures(values):
        sys.stdout.write(one_line(figure) + "\n")
    return 0
