"""Reported conditions: what a test could not check on the server at hand, said plainly at the end.

A conformance test against a real ComfyUI (COMFYUI_URL) that lacks a node pack neither fails (the server
is not wrong to lack it) nor skips silently: it checks what the server has and reports the rest through
`reported_condition`, printed in the terminal summary under "reported conditions".
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

KEY = pytest.StashKey[list[str]]()


@pytest.fixture
def reported_condition(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """`reported_condition("...")`: one plain sentence for the run's summary, naming this test."""
    lines = request.config.stash.setdefault(KEY, [])

    def report(sentence: str) -> None:
        lines.append(f"{request.node.nodeid}: {sentence}")

    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(KEY, [])
    if lines:
        terminalreporter.section("reported conditions")
        for line in lines:
            terminalreporter.write_line(line)
