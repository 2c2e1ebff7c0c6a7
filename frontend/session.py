"""Sign-in that survives a page reload without putting the designer's token in the URL.

Streamlit forgets st.session_state on reload. After a successful sign-in the token is kept in this
process's memory under a random session id; only that id goes into the URL (`?sid=`). A reload finds
the token again; it expires after FrontendSettings.session_ttl_s of inactivity and "Sign out" drops it.
A restart of the UI process forgets every session: designers sign in again, nothing else is lost.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

import streamlit as st

MAX_SESSIONS = 10_000


@dataclass
class SessionStore:
    ttl_s: float
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, token: str) -> str:
        sid = secrets.token_urlsafe(24)
        with self._lock:
            self._expire()
            self._tokens[sid] = (token, time.monotonic() + self.ttl_s)
        return sid

    def token(self, sid: str) -> str | None:
        """The token of a live session (and its expiry pushed back), or None."""
        with self._lock:
            entry = self._tokens.get(sid)
            if entry is None or entry[1] < time.monotonic():
                self._tokens.pop(sid, None)
                return None
            self._tokens[sid] = (entry[0], time.monotonic() + self.ttl_s)
            return entry[0]

    def drop(self, sid: str) -> None:
        with self._lock:
            self._tokens.pop(sid, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s for s, (_, exp) in self._tokens.items() if exp < now]:
            del self._tokens[sid]
        while len(self._tokens) >= MAX_SESSIONS:  # oldest first: dicts keep insertion order
            del self._tokens[next(iter(self._tokens))]


@st.cache_resource
def session_store(ttl_s: float) -> SessionStore:
    return SessionStore(ttl_s)
