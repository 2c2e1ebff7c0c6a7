"""Secrets read at start-up from where the deployment keeps them, never from a settings file.

A setting that holds a secret may instead name where the secret is (the stack writes only these references
into `/etc/studio/studio.env`):

- `DATABASE_PASSWORD_SECRET_ARN`: a Secrets Manager secret (ARN or name) holding the password of
  `DATABASE_URL`'s user, as the bare string or as JSON with a "password" key (an RDS-managed master user
  secret as it is; its "username" is used when the URL names none);
- `DATABASE_PASSWORD_SSM_PARAMETER`: or an SSM Parameter Store SecureString (name or ARN) holding it.

`resolve_secrets(settings)` runs where the settings are built (`get_settings()`), before anything
connects, and returns the settings with the password in `database_url`. A reference that cannot be read
stops the process with `SecretUnavailable`, which names the variable and the reference, never a value.
The values are never logged: botocore logs response bodies at DEBUG, so its loggers are held at INFO
while a secret is read. boto3 finds the region (`AWS_DEFAULT_REGION`) and, in tests, the endpoint
(`AWS_ENDPOINT_URL`) in the environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from backend.config import Settings

logger = logging.getLogger(__name__)


class SecretUnavailable(RuntimeError):
    """A secret reference of the settings could not be read (the message names the variable)."""


@contextlib.contextmanager
def _quiet_botocore() -> Iterator[None]:
    """botocore's DEBUG lines carry response bodies, i.e. the secret: keep them out of any log."""
    loggers = [logging.getLogger(name) for name in ("botocore", "boto3", "urllib3")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.INFO))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _fetch(variable: str, reference: str, read: Any) -> str:
    try:
        with _quiet_botocore():
            value = read()
    except (ClientError, BotoCoreError) as exc:
        code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__
        raise SecretUnavailable(f"{variable}: cannot read {reference!r} ({code})") from None
    if not isinstance(value, str) or not value:
        raise SecretUnavailable(f"{variable}: {reference!r} holds no text")
    return value


def read_secrets_manager(variable: str, secret_id: str) -> str:
    """The SecretString of a Secrets Manager secret (ARN or name)."""
    client = boto3.client("secretsmanager")
    return _fetch(variable, secret_id, lambda: client.get_secret_value(SecretId=secret_id)["SecretString"])


def read_ssm_parameter(variable: str, name: str) -> str:
    """The decrypted value of an SSM parameter (a SecureString, or a String)."""
    client = boto3.client("ssm")
    return _fetch(
        variable, name, lambda: client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    )


def read_reference(secret_arn_variable: str, secret_arn: str, ssm_variable: str, ssm_name: str) -> str | None:
    """The secret one of a pair of references names (Secrets Manager or SSM); None when neither is set."""
    if secret_arn and ssm_name:
        raise SecretUnavailable(f"set {secret_arn_variable} or {ssm_variable}, not both")
    if secret_arn:
        return read_secrets_manager(secret_arn_variable, secret_arn)
    if ssm_name:
        return read_ssm_parameter(ssm_variable, ssm_name)
    return None


def _password_and_user(variable: str, value: str) -> tuple[str, str | None]:
    """A bare password, or JSON {"password": ..., "username": ...} (RDS-managed secrets)."""
    if not value.lstrip().startswith("{"):
        return value, None
    try:
        document = json.loads(value)
    except json.JSONDecodeError:
        raise SecretUnavailable(f"{variable}: the secret is neither a password nor JSON") from None
    password = document.get("password") if isinstance(document, dict) else None
    if not isinstance(password, str) or not password:
        raise SecretUnavailable(f'{variable}: the secret\'s JSON has no "password"')
    username = document.get("username")
    return password, username if isinstance(username, str) and username else None


def database_url_with_password(url: str, variable: str, secret: str) -> str:
    """`url` with the secret's password (and user, when the URL names none)."""
    parsed = make_url(url)
    if parsed.password:
        raise SecretUnavailable(f"DATABASE_URL carries a password: with {variable} it must not")
    if parsed.drivername.startswith("sqlite"):
        raise SecretUnavailable(f"{variable} is set but DATABASE_URL is SQLite (no password)")
    password, username = _password_and_user(variable, secret)
    parsed = parsed.set(password=password, username=parsed.username or username)
    return parsed.render_as_string(hide_password=False)


def resolve_secrets(settings: Settings) -> Settings:
    """`settings` with every secret reference it holds read and put in place (see the module docstring)."""
    secret = read_reference(
        "DATABASE_PASSWORD_SECRET_ARN",
        settings.database_password_secret_arn,
        "DATABASE_PASSWORD_SSM_PARAMETER",
        settings.database_password_ssm_parameter,
    )
    if secret is None:
        return settings
    variable = (
        "DATABASE_PASSWORD_SECRET_ARN"
        if settings.database_password_secret_arn
        else "DATABASE_PASSWORD_SSM_PARAMETER"
    )
    url = database_url_with_password(settings.database_url, variable, secret)
    logger.info("database password read at start-up", extra={"action": "secret_read", "source": variable})
    # Validated again, as if DATABASE_URL had carried it (model_validate reads no environment).
    return type(settings).model_validate(settings.model_dump() | {"database_url": url})
