"""Notices carried over a redirect (「保存しました」 after a form): shown only if this app
wrote them.

A page that printed any ``?flash=`` text as an official notice would let anyone send
staff a link to a real page of the app saying whatever they like (「パスワードを再設定
してください…」). Each notice is signed with a key the running app made at start; a notice
without a valid signature is not shown. After a restart old links show no notice.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlencode

from starlette.requests import Request

KINDS = ("ok", "info", "warn", "error")


def _key(request: Request) -> bytes:
    state = request.app.state
    key = getattr(state, "flash_key", None)
    if key is None:
        key = state.flash_key = secrets.token_bytes(32)
    return key


def _signature(request: Request, message: str, kind: str) -> str:
    text = f"{kind}\n{message}".encode()
    return hmac.new(_key(request), text, hashlib.sha256).hexdigest()[:32]


def flash_query(request: Request, message: str, kind: str = "ok") -> str:
    """The query string (without ``?``) that shows ``message`` on the next page."""
    return urlencode({"flash": message, "kind": kind, "sig": _signature(request, message, kind)})


def verified_flash(
    request: Request, message: str | None, kind: str | None
) -> tuple[str | None, str | None]:
    """(message, kind) if this app signed them (``sig`` in the query), else (None, None)."""
    if not message:
        return None, None
    kind = kind or "ok"
    sig = request.query_params.get("sig", "")
    if kind not in KINDS or not hmac.compare_digest(sig, _signature(request, message, kind)):
        return None, None
    return message, kind
