"""configure_logging(settings): one format for every backend entry point (API, dispatcher, CLI), and the
access log's redaction of secrets that travel in URLs (a client's share link, an event stream's
`?access_token=`): they would otherwise be written with every request line."""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

from backend.config import Settings

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


_URL_SECRETS = (
    (re.compile(r"/s/[A-Za-z0-9_-]+"), "/s/<token>"),
    (re.compile(r"access_token=[^&\s]*"), "access_token=<redacted>"),
)
ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access")


class RedactUrlSecrets(logging.Filter):
    """Rewrites the request line's arguments (uvicorn's access record keeps the path in `args`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def redact(text: str) -> str:
    for pattern, replacement in _URL_SECRETS:
        text = pattern.sub(replacement, text)
    return text


class _StudioHandler(logging.StreamHandler[TextIO]):
    """Ours: configuring twice (a reloaded app, tests) adds no second one."""


def configure_logging(settings: Settings) -> None:
    for name in ACCESS_LOGGERS:
        access = logging.getLogger(name)
        if not any(isinstance(f, RedactUrlSecrets) for f in access.filters):
            access.addFilter(RedactUrlSecrets())
    root = logging.getLogger()
    if any(isinstance(h, _StudioHandler) for h in root.handlers):
        return
    handler = _StudioHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for noisy in ("httpx", "httpcore", "websockets", "botocore", "boto3", "urllib3", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
