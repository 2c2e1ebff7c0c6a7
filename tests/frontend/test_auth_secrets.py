"""The UI's sign-in secrets file, from Secrets Manager, SSM or Cognito (a moto server on loopback)."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from frontend.auth_secrets import AuthSecretsSettings, SecretUnavailable, main, write_auth_secrets
from tests.support.aws import MotoServer

ISSUER = "https://login.example.com/tenant/v2.0"
CLIENT_SECRET = 'cs~Q8x.3pJ"k\\Zr0-secret'


def sign_in(**overrides: str) -> AuthSecretsSettings:
    values = {
        "oidc_issuer": ISSUER,
        "oidc_client_id": "studio-app",
        "studio_url": "https://studio.example.com",
    }
    return AuthSecretsSettings.model_validate(values | overrides)


def auth_of(path: Path) -> dict[str, str]:
    auth: dict[str, str] = tomllib.loads(path.read_text())["auth"]
    return auth


def test_a_secrets_manager_client_secret_becomes_streamlits_auth_section_readable_by_the_ui_only(
    moto: MotoServer, tmp_path: Path
) -> None:
    arn = moto.client("secretsmanager").create_secret(Name="studio/oidc", SecretString=CLIENT_SECRET)["ARN"]
    path = tmp_path / ".streamlit" / "secrets.toml"
    assert write_auth_secrets(sign_in(oidc_client_secret_arn=arn), path) == path
    auth = auth_of(path)
    assert {k: v for k, v in auth.items() if k != "cookie_secret"} == {
        "redirect_uri": "https://studio.example.com/oauth2callback",
        "client_id": "studio-app",
        "client_secret": CLIENT_SECRET,
        "server_metadata_url": f"{ISSUER}/.well-known/openid-configuration",
        "expose_tokens": ["id"],
    }
    assert len(auth["cookie_secret"]) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["secrets.toml"]  # no temporary file left


def test_an_ssm_securestring_client_secret_is_read_and_the_cookie_secret_survives_a_restart(
    moto: MotoServer, tmp_path: Path
) -> None:
    moto.client("ssm").put_parameter(Name="/studio/oidc", Value=CLIENT_SECRET, Type="SecureString")
    path = tmp_path / "secrets.toml"
    settings = sign_in(oidc_client_secret_ssm_parameter="/studio/oidc")
    write_auth_secrets(settings, path)
    first = auth_of(path)
    write_auth_secrets(settings, path)
    assert auth_of(path) == first and first["client_secret"] == CLIENT_SECRET


def test_the_stacks_cognito_app_client_gives_its_own_secret(moto: MotoServer, tmp_path: Path) -> None:
    idp = moto.client("cognito-idp")
    pool = idp.create_user_pool(PoolName="studio-designers")["UserPool"]["Id"]
    client = idp.create_user_pool_client(UserPoolId=pool, ClientName="interior-studio", GenerateSecret=True)
    client_id, secret = client["UserPoolClient"]["ClientId"], client["UserPoolClient"]["ClientSecret"]
    issuer = f"https://cognito-idp.us-east-1.amazonaws.com/{pool}"
    settings = sign_in(oidc_issuer=issuer, oidc_client_id=client_id, oidc_cognito_user_pool_id=pool)
    auth = auth_of(write_auth_secrets(settings, tmp_path / "secrets.toml") or Path())
    assert (auth["client_id"], auth["client_secret"]) == (client_id, secret)
    assert auth["server_metadata_url"] == f"{issuer}/.well-known/openid-configuration"


def test_without_a_provider_or_a_reference_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    assert write_auth_secrets(AuthSecretsSettings.model_validate({}), path) is None
    assert write_auth_secrets(sign_in(), path) is None
    assert not path.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"oidc_client_secret_arn": "studio/missing"},
            "OIDC_CLIENT_SECRET_ARN: cannot read 'studio/missing' (ResourceNotFoundException)",
        ),
        (
            {"oidc_client_secret_ssm_parameter": "/studio/missing"},
            "OIDC_CLIENT_SECRET_SSM_PARAMETER: cannot read '/studio/missing' (ParameterNotFound)",
        ),
        (
            {"oidc_cognito_user_pool_id": "us-east-1_nothere"},
            "OIDC_COGNITO_USER_POOL_ID: cannot read 'us-east-1_nothere client studio-app'",
        ),
        (
            {"oidc_client_secret_arn": "a", "oidc_client_secret_ssm_parameter": "/b"},
            "set one of OIDC_CLIENT_SECRET_ARN, OIDC_CLIENT_SECRET_SSM_PARAMETER, OIDC_COGNITO_USER_POOL_ID, "
            "not OIDC_CLIENT_SECRET_ARN and OIDC_CLIENT_SECRET_SSM_PARAMETER",
        ),
        (
            {"oidc_client_id": "", "oidc_client_secret_arn": "a"},
            "OIDC_CLIENT_ID must be set with OIDC_ISSUER",
        ),
    ],
    ids=["secret", "parameter", "cognito", "two", "no-client-id"],
)
def test_a_reference_that_cannot_be_read_names_its_variable(
    moto: MotoServer, tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(SecretUnavailable) as raised:
        write_auth_secrets(sign_in(**overrides), tmp_path / "secrets.toml")
    assert str(raised.value).startswith(message)
    assert not (tmp_path / "secrets.toml").exists()


def test_the_unit_command_fails_with_the_variable_and_logs_no_secret(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    moto.client("ssm").put_parameter(Name="/studio/oidc", Value=CLIENT_SECRET, Type="SecureString")
    caplog.set_level(logging.DEBUG)  # after the test's own PutParameter, whose body botocore logs
    for name, value in {"OIDC_ISSUER": ISSUER, "OIDC_CLIENT_ID": "studio-app"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OIDC_CLIENT_SECRET_SSM_PARAMETER", "/studio/oidc")
    assert main(["--path", str(tmp_path / "secrets.toml")]) == 0
    monkeypatch.setenv("OIDC_CLIENT_SECRET_SSM_PARAMETER", "/studio/gone")
    assert main(["--path", str(tmp_path / "other.toml")]) == 1
    assert "OIDC_CLIENT_SECRET_SSM_PARAMETER: cannot read '/studio/gone'" in caplog.text
    assert "sign-in secrets written to" in caplog.text
    # botocore logs response bodies at DEBUG: the guard keeps the secret out.
    assert CLIENT_SECRET not in caplog.text and "0-secret" not in caplog.text


def test_streamlit_finds_the_file_in_the_uis_home_and_accepts_it(moto: MotoServer, tmp_path: Path) -> None:
    arn = moto.client("secretsmanager").create_secret(Name="studio/oidc", SecretString=CLIENT_SECRET)["ARN"]
    home = tmp_path / "home"
    write_auth_secrets(sign_in(oidc_client_secret_arn=arn), home / ".streamlit" / "secrets.toml")
    check = (
        "from streamlit.auth_util import validate_auth_credentials, get_secrets_auth_section;"
        "validate_auth_credentials('default');"
        "print(get_secrets_auth_section()['client_id'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OIDC_")} | {"HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert (done.returncode, done.stdout.strip()) == (0, "studio-app"), done.stderr
