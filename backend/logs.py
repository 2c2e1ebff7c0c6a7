"""configure_logging(settings): one format for every backend entry point (API, dispatcher, CLI)."""

from __future__ import annotations

import logging
import sys

from backend.config import Settings

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if any(getattr(h, "_studio", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler._studio = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for noisy in ("httpx", "httpcore", "websockets", "botocore", "boto3", "urllib3", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
