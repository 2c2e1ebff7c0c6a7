"""`.env.example` lists every setting of every tier, with a comment, and its defaults load."""

from __future__ import annotations

import re
from pathlib import Path

from backend.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def documented() -> dict[str, str]:
    """NAME -> the comment block above it (commented-out `# NAME=` lines count as documented)."""
    names: dict[str, str] = {}
    comment: list[str] = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]+)=", line)
        if m:
            names[m.group(1)] = " ".join(comment)
        elif line.startswith("#"):
            comment.append(line)
        else:
            comment = []
    return names


def test_every_backend_setting_is_in_env_example() -> None:
    missing = {name.upper() for name in Settings.model_fields} - set(documented())
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_every_frontend_setting_is_in_env_example() -> None:
    from frontend.config import FrontendSettings

    missing = {name.upper() for name in FrontendSettings.model_fields} - set(documented())
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_every_setting_has_a_comment() -> None:
    bare = [name for name, comment in documented().items() if not comment]
    assert not bare, f"settings without a comment above them: {bare}"


def test_env_example_values_are_valid_settings(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text((ROOT / ".env.example").read_text())
    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert settings.comfy_instances[0].url == "http://127.0.0.1:8188"
    assert settings.is_sqlite


def test_every_ui_sign_in_secrets_setting_is_in_env_example() -> None:
    from frontend.auth_secrets import AuthSecretsSettings

    missing = {name.upper() for name in AuthSecretsSettings.model_fields} - set(documented())
    assert not missing, f".env.example lacks {sorted(missing)}"
