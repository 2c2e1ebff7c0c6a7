"""`python -m bench` (`make bench`): run the benchmarks, print one table, write bench/results/<time>.json.

`--quick` runs tiny sizes (the test uses it); `--only latency,claim_rate` picks benchmarks; `--size
memory_jobs=2000` overrides one size. Figures 3 and 4 and template_jobs run on every database of `--dbs`;
the others on `--stack-db` (SQLite, the embedded default). A missed target is reported, not an error: the
exit status is 1 only when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    claim_rate,
    idle_gap,
    latency,
    lora_switches,
    memory,
    preview_latency,
    product_job,
    redesign_job,
    sagemaker_path,
    template_jobs,
    template_validation,
    throughput,
    wait_result,
)
from bench.report import Figure, table, write_json
from bench.sizes import FULL, QUICK, Sizes
from tests.support.db import PG_ADMIN_URL, pg_available

Runner = Callable[[Path, str, Sizes], list[Figure]]
BENCHES: dict[str, Runner] = {
    "latency": latency.run,  # figures 1 and 6
    "idle_gap": idle_gap.run,
    "throughput": throughput.run,
    "claim_rate": claim_rate.run,
    "lora_switches": lora_switches.run,
    "memory": memory.run,
    "sagemaker": sagemaker_path.run,  # figure 8
    "wait_result": wait_result.run,  # Prefer: wait and the drop-in text2image over polling
    "template_validation": template_validation.run,  # check_graph + needs + inputs of 300 nodes
    "template_jobs": template_jobs.run,  # POST /api/jobs: template bodies against the legacy one
    "product_job": product_job.run,  # a product render's added latency against its emulated GPU time
    "redesign_job": redesign_job.run,  # the same for restyle, stage and edit of a room photo (issue 19)
    "preview_latency": preview_latency.run,  # ComfyUI's preview frame → the designer's event stream
}
PER_DATABASE = frozenset({"throughput", "claim_rate", "template_jobs"})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that every benchmark runs")
    p.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated, of: {', '.join(BENCHES)}")
    p.add_argument(
        "--dbs", default="sqlite,postgresql", help="databases for throughput, claim_rate and template_jobs"
    )
    p.add_argument("--stack-db", default="sqlite", help="database for the other benchmarks")
    p.add_argument("--size", action="append", default=[], metavar="NAME=VALUE", help="override one size")
    p.add_argument("--out", type=Path, help="JSON file (default bench/results/<time>.json)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, databases)")
    return p.parse_args(argv)


def _parse(current: object, raw: str) -> object:
    if isinstance(current, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(current, tuple):
        return tuple(int(x) for x in raw.split(","))
    return int(raw) if isinstance(current, int) else float(raw)


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else FULL
    for item in args.size:
        name, _, raw = item.partition("=")
        if name not in {f.name for f in dataclasses.fields(Sizes)}:
            raise SystemExit(f"unknown size {name!r}")
        sizes = dataclasses.replace(sizes, **{name: _parse(getattr(sizes, name), raw)})  # type: ignore[arg-type]
    return sizes


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(BENCHES)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    dbs = [d.strip() for d in args.dbs.split(",") if d.strip()]
    return [(n, db) for n in names for db in (dbs if n in PER_DATABASE else [args.stack_db])]


def run_one(name: str, db: str, workdir: Path, sizes: Sizes) -> list[Figure]:
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    try:
        figures = BENCHES[name](workdir / f"{name}-{db}", db, sizes)
    except Exception as exc:
        traceback.print_exc()
        figures = [Figure(f"{name}.error", f"{name} ({db})", f"ERROR: {exc}"[:120], "", "", False)]
        figures[0].values["error"] = traceback.format_exc()
    for f in figures:
        f.values["run"] = {
            "bench": name,
            "seconds": round(time.monotonic() - started, 1),
            "loadavg_1m_before": load_before,
            "loadavg_1m_after": os.getloadavg()[0],
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_from(args)
    runs = plan(args)
    if any(db == "postgresql" for _, db in runs) and not pg_available():
        raise SystemExit(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (set BENCH_PG_URL)")
    started = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    figures: list[Figure] = []
    for name, db in runs:
        print(f"== {name} ({db})", flush=True)
        new = run_one(name, db, workdir, sizes)
        print(table(new), flush=True)
        figures += new
    print("\n" + table(figures))
    options = {"sizes": dataclasses.asdict(sizes), "runs": runs, "load_tool": throughput.load_tool()}
    path = write_json(figures, options, args.out, started)
    print(f"\nwritten {path}")
    failed = any(f.key.endswith(".error") for f in figures)
    if args.keep or failed:
        print(f"work folder (logs, databases): {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
