"""The soak run (`make soak`) in miniature: real processes, every fault once, nothing lost or run twice.

Two runs share out the storages: SQLite with local storage on a disk that fills up, PostgreSQL (a
cluster of the soak's own, restarted) with S3 behind the fault proxy. A fault this machine cannot
produce must be reported as unavailable, with its reason, never silently skipped.
"""

from __future__ import annotations

import pytest

from bench import soak

pytestmark = [pytest.mark.slow, pytest.mark.emulator_only, pytest.mark.timeout(300)]  # its own budget: 240 s

JOBS = 60
EVERY_RUN = {"kill_dispatcher", "term_dispatcher", "kill_comfyui", "cancel", "restart_api", "kill_api"}
PER_RUN = {("sqlite", "local"): {"disk_full"}, ("postgresql", "s3"): {"restart_postgres", "s3_outage"}}


@pytest.mark.parametrize(("database", "storage"), list(PER_RUN))
def test_a_small_soak_with_every_fault_loses_nothing_and_duplicates_nothing(
    database: str, storage: str
) -> None:
    argv = ["--jobs", str(JOBS), "--database", database, "--storage", storage, "--fault-rate", "0.05"]
    argv += ["--step-ms", "20", "--every-fault", "--seed", "11", "--timeout-s", "240"]
    result = soak.run(soak.parse_args(argv))
    assert result["problems"] == [] and result["fault_errors"] == []
    assert (result["lost"], result["duplicated"]) == (0, 0)
    assert result["accepted"] == JOBS
    assert result["succeeded"] + result["failed"] + result["cancelled"] == JOBS
    assert result["succeeded"] > 0
    wanted = (EVERY_RUN | PER_RUN[database, storage]) - set(result["unavailable"])
    assert wanted <= {fault for fault, n in result["faults"].items() if n > 0}, result["faults"]
    assert all(reason for reason in result["unavailable"].values())
    if storage == "s3":
        assert {"internal_error", "slowdown", "slow"} <= set(result["storage_faults"])
