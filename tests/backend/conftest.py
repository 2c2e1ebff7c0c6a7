"""The backend tests' fixtures (the suite-wide ones are registered in tests/conftest.py)."""

from __future__ import annotations

import pytest

from backend.auth import hash_token
from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.models import Designer


@pytest.fixture
async def sm(db_url: str):
    engine = make_engine(Settings(_env_file=None, database_url=db_url))  # type: ignore[call-arg]
    maker = make_sessionmaker(engine)
    async with maker() as s, s.begin():
        s.add(Designer(id="d1", name="alice", token_hash=hash_token("t")))
    yield maker
    await engine.dispose()
