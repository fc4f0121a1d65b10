"""Dashboard sessions: a signed cookie after sign-in; the key itself is never kept, nor put in a URL.

Signing in posts the API key (a user) or the admin token (the operator) in a form body. The
session that follows is a cookie saying who signed in and until when, signed with
HMAC-SHA256. It needs no server-side state, so every worker and host checks it alike. The
signing secret is ``IZZI_SESSION_SECRET`` when set, else derived from ``IZZI_ADMIN_TOKEN``,
else drawn at start (sessions then end with the process and do not cross workers; the log
says so). A user session names its key, and each page checks that key is still live:
revoking the key ends its sessions. An operator session carries a fingerprint of the admin
token: changing the token ends them.

CSRF: every form carries a token bound to its session (an HMAC of the session's nonce); the
sign-in form, before any session exists, a random token that must equal a cookie of its own
(double submit). Cookies are HttpOnly, SameSite=Strict and scoped to ``/dashboard``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from izzi_proxy.config_reader import ConfigError
from izzi_proxy.ledger import ApiKey

log = logging.getLogger("izzi.dashboard")

SECRET_ENV = "IZZI_SESSION_SECRET"
MIN_SECRET = 32
OPERATOR, USER = "operator", "user"


@dataclass(frozen=True, slots=True)
class Session:
    role: str  # OPERATOR | USER
    nonce: str  # binds the session's CSRF token
    expires_at: float
    key_id: int | None = None  # a user's: the key they signed in with
    account_id: int | None = None
    token: str | None = None  # an operator's: the admin token's fingerprint


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, secret: bytes, admin_digest: bytes | None, lifetime_s: float) -> None:
        self._secret = secret
        self._admin = admin_digest
        self.lifetime_s = lifetime_s
        self._token = self._mac(b"admin", admin_digest)[:16] if admin_digest else None

    @classmethod
    def from_env(cls, admin_digest: bytes | None, lifetime_s: float, env: Mapping[str, str] = os.environ) -> Sessions:
        configured = env.get(SECRET_ENV, "")
        if len(configured) >= MIN_SECRET:
            secret = configured.encode()
        elif configured:
            raise ConfigError(
                "environment",
                SECRET_ENV,
                f"must be at least {MIN_SECRET} characters (it signs the "
                "dashboard's sessions); unset it to derive one from the admin token",
            )
        elif admin_digest is not None:
            secret = hmac.new(admin_digest, b"izzi dashboard sessions", hashlib.sha256).digest()
        else:
            log.warning("dashboard: neither %s nor the admin token is set; sessions last only as long as this "
                        "process and are not shared with other workers", SECRET_ENV)  # fmt: skip
            secret = secrets.token_bytes(32)
        return cls(secret, admin_digest, lifetime_s)

    @property
    def operator_enabled(self) -> bool:
        return self._admin is not None

    def is_admin_token(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode()).digest()
        return self._admin is not None and hmac.compare_digest(digest, self._admin)

    def _mac(self, *parts: bytes | None) -> str:
        return _b64(hmac.new(self._secret, b"\0".join(p or b"" for p in parts), hashlib.sha256).digest())

    def issue(self, role: str, now: float, key: ApiKey | None = None) -> str:
        """A new session's cookie value."""
        payload = {"r": role, "n": secrets.token_urlsafe(16), "e": int(now + self.lifetime_s)}
        if key is not None:
            payload.update(k=key.id, a=key.account_id)
        if role == OPERATOR:
            payload["t"] = self._token
        body = _b64(orjson.dumps(payload))
        return f"{body}.{self._mac(b'session', body.encode())}"

    def read(self, value: str | None, now: float) -> Session | None:
        """The session a cookie holds, or None: absent, forged, expired, or an operator's from
        before the admin token changed."""
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(b"session", body.encode())):
            return None
        try:
            payload = orjson.loads(_unb64(body))
            session = Session(payload["r"], payload["n"], payload["e"], payload.get("k"), payload.get("a"),
                              payload.get("t"))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= now or session.role not in (OPERATOR, USER):
            return None
        if session.role == OPERATOR and (self._token is None or session.token != self._token):
            return None
        return session

    def csrf(self, session: Session) -> str:
        return self._mac(b"csrf", session.nonce.encode())

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(presented or "", self.csrf(session))
