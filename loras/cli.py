"""What every `python -m loras.<tool>` entry point shares: logging set-up and writing results to stdout.

Reports and commands are the tools' output, so they go to stdout; progress and diagnostics are log
lines on stderr.
"""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_logging(verbose: bool = False) -> None:
    """Log lines on stderr: INFO by default, DEBUG with --verbose."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, stream=sys.stderr
    )


def write_out(text: str) -> None:
    """One block of CLI output on stdout, newline-terminated."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def description(doc: str | None) -> str:
    """A module docstring's first paragraph, on one line: the `--help` description."""
    return " ".join((doc or "").split("\n\n")[0].split())
