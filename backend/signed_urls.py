"""Signed, expiring image URLs for browsers and integrations that cannot send a bearer token.

A URL names one image and an expiry time (Unix seconds); its signature is an HMAC-SHA256 of both under
IMAGE_URL_SECRET. Nothing is stored: any API process with the same secret verifies it, and changing the
secret revokes every URL handed out.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from backend.errors import AppError


class Forbidden(AppError):
    """This link is not valid."""

    status_code = 403
    code = "forbidden"


@dataclass(frozen=True)
class SignedImage:
    image_id: str
    expires: int
    signature: str

    def query(self) -> str:
        return f"expires={self.expires}&signature={self.signature}"


def _mac(secret: str, image_id: str, expires: int) -> str:
    message = f"image:{image_id}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, image_id: str, ttl_s: int, now: float | None = None) -> SignedImage:
    expires = int(now if now is not None else time.time()) + ttl_s
    return SignedImage(image_id, expires, _mac(secret, image_id, expires))


def verify(secret: str, image_id: str, expires: int, signature: str, now: float | None = None) -> None:
    """Raise Forbidden unless `signature` is this image's for `expires` and that time has not passed.

    The signature is checked first, so a forged expiry is a bad signature, never an "expired" hint.
    Compared as bytes: `compare_digest` refuses non-ASCII text, and a link may carry anything."""
    if not hmac.compare_digest(_mac(secret, image_id, expires).encode(), signature.encode()):
        raise Forbidden("The link's signature is not valid.", code="invalid_signature")
    if (now if now is not None else time.time()) >= expires:
        raise Forbidden("The link has expired; ask for the image again.", code="link_expired")
