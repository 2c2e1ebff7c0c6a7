"""Signed image links and the `Prefer` header, without a server: the rules themselves."""

from __future__ import annotations

import pytest

from backend.config import Settings
from backend.job_wait import prefer_wait
from backend.signed_urls import Forbidden, sign, verify

IMAGE = "0b9f2f0e-6f53-4c4e-9d55-1f2d3c4b5a69"


def test_a_link_verifies_until_it_expires() -> None:
    link = sign("k", IMAGE, 60, now=1000)
    verify("k", IMAGE, link.expires, link.signature, now=1059)
    with pytest.raises(Forbidden) as exc:
        verify("k", IMAGE, link.expires, link.signature, now=1060)
    assert exc.value.error_code == "link_expired"


@pytest.mark.parametrize(
    ("secret", "image_id", "expires_delta", "signature"),
    [("other", IMAGE, 0, None), ("k", IMAGE.replace("0b", "1b"), 0, None), ("k", IMAGE, 1, None),
     ("k", IMAGE, 0, "\u00fb\u00ea"), ("k", "\x02w\u00e9", 0, None)],
)  # fmt: skip
def test_a_changed_secret_image_expiry_or_signature_is_a_bad_signature(
    secret: str, image_id: str, expires_delta: int, signature: str | None
) -> None:
    link = sign("k", IMAGE, 60, now=1000)
    with pytest.raises(Forbidden) as exc:
        verify(secret, image_id, link.expires + expires_delta, signature or link.signature, now=1000)
    assert exc.value.error_code == "invalid_signature"


def test_an_unset_secret_is_drawn_per_process_and_a_set_one_kept() -> None:
    a = Settings(_env_file=None, image_url_secret="")  # type: ignore[call-arg]
    b = Settings(_env_file=None)  # type: ignore[call-arg]
    assert len(a.image_url_secret) >= 32 and a.image_url_secret != b.image_url_secret
    assert Settings(_env_file=None, image_url_secret="shared").image_url_secret == "shared"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        (None, None),
        ("wait=10", 10),
        ("respond-async, wait=5", 5),
        ("WAIT = 7 ; foo=bar", 7),
        ('wait="3"', 3),
        ("wait=-1", None),
        ("wait=soon", None),
        ("return=minimal", None),
    ],
)
def test_prefer_wait_is_read_as_rfc_7240_says(header: str | None, wait: int | None) -> None:
    assert prefer_wait(header) == wait
