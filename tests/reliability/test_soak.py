"""The soak run (`make soak`) in miniature: real processes, random faults, nothing lost or run twice."""

from __future__ import annotations

import argparse

import pytest

from tests import soak

pytestmark = [pytest.mark.slow, pytest.mark.emulator_only]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_small_soak_loses_nothing_and_duplicates_nothing(database: str) -> None:
    args = argparse.Namespace(
        jobs=60, dispatchers=2, database=database, fault_rate=0.05, seed=11, timeout_s=120
    )
    result = soak.run(args)
    assert result["problems"] == []
    assert (result["lost"], result["duplicated"]) == (0, 0)
    assert result["accepted"] == 60
    assert result["succeeded"] + result["failed"] + result["cancelled"] == 60
    assert result["succeeded"] > 0 and sum(result["faults"].values()) > 0
