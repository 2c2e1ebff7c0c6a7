"""A moto server on loopback (S3, SNS, SQS, SageMaker) for every AWS-facing test.

boto3 talks to it over real HTTP (`endpoint_url`), exactly as to AWS. One server per test session;
`moto_reset` gives a test a clean account.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.support.net import free_port

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str

    def client(self, service: str, **kwargs: Any) -> Any:
        config = Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 2, "mode": "standard"},
        )
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            config=config,
            **CREDENTIALS,
            **kwargs,
        )

    def reset(self) -> None:
        httpx.post(f"{self.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()


@contextlib.contextmanager
def serve_moto() -> Iterator[MotoServer]:
    """A moto server on a free loopback port until the block ends (the tests' fixture, bench/)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoServer(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with serve_moto() as server:
        yield server


@pytest.fixture
def moto(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A clean moto account; AWS_* variables point every boto3 client of the test at it."""
    moto_server.reset()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    return moto_server
