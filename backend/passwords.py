"""Designers' passwords: argon2id hashes (pwdlib), the policy a new one must meet, and a verification
that takes as long whether or not the account exists.

The policy: at least PASSWORD_MIN_LENGTH characters (at most MAX_LENGTH), not one of the most common
passwords of public breaches (`data/common_passwords.txt`) nor one of them followed by digits and symbols,
and not the designer's own name or email. Hashing is slow on purpose (about 0.1 s): callers run it in a
thread (`hash_password`, `verify_password` are async).
"""

from __future__ import annotations

import asyncio
import re
from functools import lru_cache
from pathlib import Path

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

DENY_LIST = Path(__file__).parent / "data" / "common_passwords.txt"
MAX_LENGTH = 256  # argon2 takes any length; a cap keeps a sign-in request cheap to refuse
_TRAILING = re.compile(r"[\d\W_]+$")


@lru_cache(maxsize=1)
def _hasher() -> PasswordHash:
    return PasswordHash((Argon2Hasher(),))  # argon2id, argon2-cffi's RFC 9106 low-memory profile


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash no password matches, verified for unknown accounts so that they take as long."""
    return _hasher().hash("no account has this password: it is only timed")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = DENY_LIST.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def policy_problem(password: str, min_length: int, *, name: str = "", email: str = "") -> str | None:
    """Why `password` may not be set (a sentence), or None."""
    if len(password) < min_length:
        return f"at least {min_length} characters"
    if len(password) > MAX_LENGTH:
        return f"at most {MAX_LENGTH} characters"
    lowered = password.lower()
    common = common_passwords()
    if lowered in common or _TRAILING.sub("", lowered) in common or len(set(lowered)) < 4:
        return "one of the most common passwords: choose another"
    personal = {name.lower(), email.lower(), email.lower().split("@")[0]} - {""}
    if any(p in lowered for p in personal if len(p) >= 4):
        return "it must not contain your name or email"
    return None


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher().hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    """True when `password` matches; with no hash (no account, no password) it still takes as long."""
    candidate = password[:MAX_LENGTH]
    matches = await asyncio.to_thread(_hasher().verify, candidate, password_hash or _dummy_hash())
    return matches and password_hash is not None
