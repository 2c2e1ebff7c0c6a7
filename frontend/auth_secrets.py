"""The UI's sign-in secrets file: Streamlit's `st.login` reads `[auth]` from `~/.streamlit/secrets.toml`.

`python -m frontend.auth_secrets` runs before the UI starts (the studio-ui unit's ExecStartPre). With an
identity provider (`OIDC_ISSUER`, `OIDC_CLIENT_ID`) and a reference to its client secret it reads the
secret and writes the file, mode 0600, in the UI's home (the unit's state directory): the secret lives in
AWS and in that file only, never in `/etc/studio/studio.env`, the UserData or a log. The references:

- `OIDC_CLIENT_SECRET_ARN`: a Secrets Manager secret (ARN or name) holding the client secret;
- `OIDC_CLIENT_SECRET_SSM_PARAMETER`: or an SSM Parameter Store SecureString (name or ARN);
- `OIDC_COGNITO_USER_POOL_ID`: or the stack's Cognito user pool, whose app client `OIDC_CLIENT_ID` keeps
  its own secret (cognito-idp:DescribeUserPoolClient).

Without a provider or a reference nothing is written (a laptop may keep a hand-written file). A reference
that cannot be read stops the unit with a message naming the variable. The cookie secret that signs the
sign-in cookie is drawn once and kept in the file across restarts. The UI tier imports no backend code,
so the few lines that read AWS are its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)

DEFAULT_PATH = Path("~/.streamlit/secrets.toml")


class AuthSecretsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    oidc_issuer: str = Field("", description="the identity provider ('' = no OIDC sign-in, nothing written)")
    oidc_client_id: str = Field("", description="the studio's client id at the provider")
    studio_url: str = Field(
        "http://localhost:8501", description="the provider redirects to <url>/oauth2callback"
    )
    oidc_client_secret_arn: str = Field("", description="Secrets Manager secret with the client secret")
    oidc_client_secret_ssm_parameter: str = Field("", description="or an SSM SecureString with it")
    oidc_cognito_user_pool_id: str = Field("", description="or the Cognito user pool of OIDC_CLIENT_ID")


class SecretUnavailable(RuntimeError):
    """A client secret reference could not be read (the message names the variable)."""


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


def _fetch(variable: str, reference: str, read: Callable[[], Any]) -> str:
    try:
        with _quiet_botocore():
            value = read()
    except (ClientError, BotoCoreError) as exc:
        code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__
        raise SecretUnavailable(f"{variable}: cannot read {reference!r} ({code})") from None
    if not isinstance(value, str) or not value:
        raise SecretUnavailable(f"{variable}: {reference!r} holds no client secret")
    return value


def read_client_secret(settings: AuthSecretsSettings) -> str | None:
    """The client secret the settings point at; None when they point at none."""
    refs = {
        "OIDC_CLIENT_SECRET_ARN": settings.oidc_client_secret_arn,
        "OIDC_CLIENT_SECRET_SSM_PARAMETER": settings.oidc_client_secret_ssm_parameter,
        "OIDC_COGNITO_USER_POOL_ID": settings.oidc_cognito_user_pool_id,
    }
    given = [name for name, value in refs.items() if value]
    if len(given) > 1:
        raise SecretUnavailable(f"set one of {', '.join(refs)}, not {' and '.join(given)}")
    if settings.oidc_client_secret_arn:
        sm = boto3.client("secretsmanager")
        arn = settings.oidc_client_secret_arn
        return _fetch(given[0], arn, lambda: sm.get_secret_value(SecretId=arn)["SecretString"])
    if settings.oidc_client_secret_ssm_parameter:
        ssm = boto3.client("ssm")
        name = settings.oidc_client_secret_ssm_parameter
        return _fetch(
            given[0], name, lambda: ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        )
    if settings.oidc_cognito_user_pool_id:
        idp = boto3.client("cognito-idp")
        pool, client_id = settings.oidc_cognito_user_pool_id, settings.oidc_client_id
        return _fetch(
            given[0],
            f"{pool} client {client_id}",
            lambda: idp.describe_user_pool_client(UserPoolId=pool, ClientId=client_id)["UserPoolClient"].get(
                "ClientSecret"
            ),
        )
    return None


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string (ASCII, \uXXXX escapes) is a TOML basic string


def _kept_cookie_secret(path: Path) -> str | None:
    try:
        auth = tomllib.loads(path.read_text()).get("auth", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    value = auth.get("cookie_secret")
    return value if isinstance(value, str) and len(value) >= 32 else None


def auth_section(settings: AuthSecretsSettings, client_secret: str, cookie_secret: str) -> str:
    issuer = settings.oidc_issuer.rstrip("/")
    values = {
        "redirect_uri": f"{settings.studio_url.rstrip('/')}/oauth2callback",
        "cookie_secret": cookie_secret,
        "client_id": settings.oidc_client_id,
        "client_secret": client_secret,
        "server_metadata_url": f"{issuer}/.well-known/openid-configuration",
    }
    lines = [f"{key} = {_toml_string(value)}" for key, value in values.items()]
    # st.user.tokens["id"]: the studio hands the provider's ID token to the backend, which verifies it
    lines.append('expose_tokens = ["id"]')
    return (
        "# Written at start-up by `python -m frontend.auth_secrets`; do not edit.\n[auth]\n"
        + "\n".join(lines)
        + "\n"
    )


def _write_private(path: Path, text: str) -> None:
    """Write `text` readable by its owner only (0600), replacing the file in one step."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)


def write_auth_secrets(settings: AuthSecretsSettings, path: Path = DEFAULT_PATH) -> Path | None:
    """Write Streamlit's `[auth]` to `path` when the settings name a provider and its secret."""
    if not settings.oidc_issuer:
        logger.info("no OIDC_ISSUER: no sign-in secrets written")
        return None
    if not settings.oidc_client_id:
        raise SecretUnavailable("OIDC_CLIENT_ID must be set with OIDC_ISSUER")
    client_secret = read_client_secret(settings)
    if client_secret is None:
        logger.info("no OIDC client secret reference: %s left as it is", path)
        return None
    path = path.expanduser()
    cookie_secret = _kept_cookie_secret(path) or secrets.token_urlsafe(32)
    _write_private(path, auth_section(settings, client_secret, cookie_secret))
    logger.info("sign-in secrets written to %s", path, extra={"action": "auth_secrets_written"})
    return path


def main(argv: list[str] | None = None) -> int:
    description = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m frontend.auth_secrets", description=description)
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="default: %(default)s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        write_auth_secrets(AuthSecretsSettings(), args.path)
    except SecretUnavailable as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
