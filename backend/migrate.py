"""Run Alembic migrations programmatically (prestart, tests): `upgrade(settings)`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from backend.config import Settings

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")


def alembic_config(settings: Settings) -> Config:
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)
