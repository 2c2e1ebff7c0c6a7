"""Start-up secrets: the database password read from Secrets Manager or SSM (a moto server on loopback)."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from backend.config import Settings, get_settings
from backend.db import make_engine
from backend.secret_sources import SecretUnavailable, resolve_secrets
from tests.support.aws import MotoServer
from tests.support.db import PG_ADMIN_URL

URL = "postgresql+psycopg://studio@db.internal:5432/studio"
# Everything a URL must escape, as RDS-managed passwords may hold.
PASSWORD = "Zq9:p@ss/w%rd#?&x"


def settings(**overrides: str) -> Settings:
    return Settings.model_validate({"database_url": URL} | overrides)


def put_secret(moto: MotoServer, value: str, name: str = "studio/db") -> str:
    arn: str = moto.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
    return arn


def put_parameter(moto: MotoServer, value: str, name: str = "/studio/db-password") -> str:
    moto.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString")
    return name


def test_a_secrets_manager_password_goes_into_the_database_url(moto: MotoServer) -> None:
    arn = put_secret(moto, PASSWORD)
    resolved = resolve_secrets(settings(database_password_secret_arn=arn))
    url = make_url(resolved.database_url)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "studio",
        PASSWORD,
        "db.internal",
        5432,
        "studio",
    )
    assert resolved.database_url.startswith("postgresql+psycopg://studio:")


def test_an_rds_managed_json_secret_gives_the_password_and_the_user_the_url_lacks(moto: MotoServer) -> None:
    arn = put_secret(moto, json.dumps({"username": "master", "password": PASSWORD, "engine": "postgres"}))
    with_user = make_url(resolve_secrets(settings(database_password_secret_arn=arn)).database_url)
    assert (with_user.username, with_user.password) == ("studio", PASSWORD)  # the URL's user wins
    no_user = settings(
        database_url="postgresql+psycopg://db.internal/studio", database_password_secret_arn=arn
    )
    url = make_url(resolve_secrets(no_user).database_url)
    assert (url.username, url.password) == ("master", PASSWORD)


def test_an_ssm_securestring_password_goes_into_the_database_url(moto: MotoServer) -> None:
    name = put_parameter(moto, PASSWORD)
    resolved = resolve_secrets(settings(database_password_ssm_parameter=name))
    assert make_url(resolved.database_url).password == PASSWORD


def test_without_a_reference_the_settings_are_left_as_they_are() -> None:
    plain = settings()
    assert resolve_secrets(plain) is plain


def test_get_settings_reads_the_reference_from_the_environment(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = put_parameter(moto, PASSWORD)
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DATABASE_PASSWORD_SSM_PARAMETER", name)
    get_settings.cache_clear()
    try:
        assert make_url(get_settings().database_url).password == PASSWORD
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"database_password_secret_arn": "studio/missing"},
            "DATABASE_PASSWORD_SECRET_ARN: cannot read 'studio/missing' (ResourceNotFoundException)",
        ),
        (
            {"database_password_ssm_parameter": "/studio/missing"},
            "DATABASE_PASSWORD_SSM_PARAMETER: cannot read '/studio/missing' (ParameterNotFound)",
        ),
        (
            {"database_password_secret_arn": "studio/db", "database_password_ssm_parameter": "/studio/db"},
            "set DATABASE_PASSWORD_SECRET_ARN or DATABASE_PASSWORD_SSM_PARAMETER, not both",
        ),
    ],
    ids=["secret", "parameter", "both"],
)
def test_a_reference_that_cannot_be_read_stops_the_start_naming_the_variable(
    moto: MotoServer, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(SecretUnavailable) as raised:
        resolve_secrets(settings(**overrides))
    assert str(raised.value) == message


def test_a_url_that_already_has_a_password_or_is_sqlite_is_refused(moto: MotoServer) -> None:
    arn = put_secret(moto, PASSWORD)
    with pytest.raises(SecretUnavailable, match="DATABASE_URL carries a password"):
        with_password = URL.replace("studio@", "studio:old@")
        resolve_secrets(settings(database_url=with_password, database_password_secret_arn=arn))
    with pytest.raises(SecretUnavailable, match="DATABASE_URL is SQLite"):
        resolve_secrets(settings(database_url="sqlite+aiosqlite:///x.db", database_password_secret_arn=arn))
    json_without_password = put_secret(moto, json.dumps({"username": "x"}), name="studio/nopassword")
    no_password = 'DATABASE_PASSWORD_SECRET_ARN: the secret\'s JSON has no "password"'
    with pytest.raises(SecretUnavailable, match=no_password):
        resolve_secrets(settings(database_password_secret_arn=json_without_password))


def test_the_secret_never_reaches_a_log_even_at_debug(
    moto: MotoServer, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    caplog.set_level(logging.DEBUG)
    # Another test of this worker may have run the backend's logging set-up, which holds botocore at
    # WARNING: open it to DEBUG as a bare process has it, so only the guard can keep the body out.
    botocore = logging.getLogger("botocore")
    level = botocore.level
    botocore.setLevel(logging.NOTSET)
    request.addfinalizer(lambda: botocore.setLevel(level))
    arn = put_secret(moto, PASSWORD)
    caplog.clear()
    resolve_secrets(settings(database_password_secret_arn=arn))
    with pytest.raises(SecretUnavailable):
        resolve_secrets(settings(database_password_secret_arn=arn, database_url="sqlite+aiosqlite:///x.db"))
    assert "database password read at start-up" in caplog.text
    assert PASSWORD not in caplog.text and "p@ss" not in caplog.text
    # botocore logs response bodies at DEBUG: without the guard it would have logged the secret here.
    assert botocore.level == logging.NOTSET  # the guard put back what it found


async def test_the_resolved_url_connects_to_postgresql(moto: MotoServer) -> None:
    # The test server trusts loopback, so any password signs in: this checks the URL the secret makes.
    base = make_url(PG_ADMIN_URL)
    url = base.set(drivername="postgresql+psycopg", password=None).render_as_string(hide_password=False)
    arn = put_secret(moto, PASSWORD)
    engine = make_engine(resolve_secrets(settings(database_url=url, database_password_secret_arn=arn)))
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("select 1"))).scalar() == 1
    finally:
        await engine.dispose()
