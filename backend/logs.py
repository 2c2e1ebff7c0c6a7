"""configure_logging(settings): one format for every backend entry point (API, dispatcher, CLI)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from backend.config import Settings

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _StudioHandler(logging.StreamHandler[TextIO]):
    """Ours: configuring twice (a reloaded app, tests) adds no second one."""


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if any(isinstance(h, _StudioHandler) for h in root.handlers):
        return
    handler = _StudioHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for noisy in ("httpx", "httpcore", "websockets", "botocore", "boto3", "urllib3", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
