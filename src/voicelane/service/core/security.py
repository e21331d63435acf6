"""Local-service protection (docs/security.md): what keeps a web page the operator has open from
driving a loopback service.

- a per-install token (``<data_dir>/api_token``, 0600, made at first start with ``secrets``) that
  training/admin routes require even on loopback unless the operator sets ``VOICELANE_AUTH=off``;
- a ``Host`` allowlist (loopback names, IP literals when bound beyond loopback, configured names)
  against DNS rebinding;
- an ``Origin`` check on state-changing methods (same origin or a configured CORS origin);
- ``Content-Type: application/json`` on JSON bodies (a "simple" cross-origin request can only send
  ``text/plain``, form or multipart bodies, which need no preflight);
- strict JSON (no ``NaN``/``Infinity``, bounded nesting) and bounded header values.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import os
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from voicelane.service.core.config import Settings
from voicelane.service.core.errors import ApiError, envelope

log = logging.getLogger("voicelane.service.security")

TOKEN_FILE = "api_token"
TOKEN_COOKIE = "voicelane_token"
TOKEN_HEADER = "x-voicelane-token"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "127.0.0.1", "::1"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_HEADER_VALUE_BYTES = 8192
MAX_HEADERS = 100
MAX_JSON_DEPTH = 32
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
EVENT_ID_RE = re.compile(r"^[0-9]{1,19}$")
MAX_EVENT_ID = 2**62


# --------------------------------------------------------------------------------------------
# the per-install token


def ensure_token(data_dir: Path) -> str:
    """Read ``<data_dir>/api_token``, creating it (0600, atomically) on first use."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / TOKEN_FILE
    token = _read_token(path)
    if token is not None:
        return token
    token = secrets.token_urlsafe(32)
    tmp = data_dir / f".{TOKEN_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process made it first: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    token = _read_token(path)
    if token is None:
        raise RuntimeError(f"could not create the service token file {path}")
    return token


def _read_token(path: Path) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_mode & 0o077:
        log.warning("%s was readable by others; permissions reset to 0600", path)
        os.chmod(path, 0o600)
    text = path.read_text("ascii", "replace").strip()
    if not TOKEN_RE.match(text):
        raise RuntimeError(f"the service token file {path} is malformed; delete it to make a new one")
    return text


def effective_token(settings: Settings) -> str | None:
    """The token the service accepts: ``VOICELANE_API_TOKEN`` if set, else the per-install token
    when any route needs one, else none."""
    if settings.api_token:
        return settings.api_token
    if settings.admin_token_required or settings.speak_require_token:
        return ensure_token(settings.data_dir)
    return None


def presented_token(headers: Any, cookies: dict[str, str]) -> str:
    """The token a request carries: ``Authorization: Bearer``, ``X-Voicelane-Token`` or the cookie."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get(TOKEN_HEADER, "").strip() or cookies.get(TOKEN_COOKIE, "")


def token_matches(given: str, expected: str | None) -> bool:
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


# --------------------------------------------------------------------------------------------
# Host and Origin


def split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` / ``[v6][:port]`` -> (lowercase host, port); None when malformed."""
    value = value.strip().lower()
    if not value or len(value) > 255 or any(c.isspace() or c in "/?#@\\" for c in value):
        return None
    try:
        parts = urlsplit("//" + value)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host, port


def _is_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class HostPolicy:
    """Which ``Host`` names the service answers (DNS rebinding: a hostile name resolving to
    127.0.0.1 reaches the service with its own name in ``Host``)."""

    def __init__(self, settings: Settings):
        names = {h.strip().lower() for h in settings.allowed_hosts}
        self.any = "*" in names
        bind = settings.bind_host.strip().strip("[]").lower()
        self.names = (names - {"*"}) | LOOPBACK_NAMES | ({bind} if bind not in ("", "0.0.0.0", "::") else set())
        self.ip_literals = not settings.loopback  # a rebinding attack always sends a name, never an IP

    def allows(self, host: str) -> bool:
        if self.any or host in self.names or host.endswith(".localhost"):
            return True
        ip = _is_ip(host)
        return ip is not None and (ip.is_loopback or self.ip_literals)


def origin_allowed(origin: str, host_header: str, cors_origins: list[str]) -> bool:
    origin = origin.strip().rstrip("/").lower()
    allowed = {o.strip().rstrip("/").lower() for o in cors_origins}
    if "*" in allowed or (origin in allowed and origin != "null"):
        return True
    try:
        parts = urlsplit(origin)
        o_host, o_port = parts.hostname, parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not o_host:
        return False
    h = split_host(host_header)
    if h is None:
        return False
    default = 443 if parts.scheme == "https" else 80
    return (o_host, o_port or default) == (h[0], h[1] or default)


# --------------------------------------------------------------------------------------------
# request bodies and headers


def is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def require_json_content_type(content_type: str | None) -> None:
    if not is_json_media_type(content_type or ""):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
            {"contentType": (content_type or "")[:100]},
        )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:32]} is out of range")
    return value


def _depth(obj: Any, limit: int) -> int:
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return deepest


def strict_json_loads(body: bytes) -> Any:
    """``json.loads`` without NaN/Infinity and with bounded nesting; ValueError when refused."""
    try:
        obj = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("the JSON nests too deeply") from None
    if _depth(obj, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValueError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    return obj


def parse_event_id(value: str | None) -> int | None:
    """An SSE ``Last-Event-ID``: ASCII digits, clamped to the largest sequence number; anything
    else (superscripts, 5000 digits, text) is ignored."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not EVENT_ID_RE.match(value):
        return None
    return min(int(value), MAX_EVENT_ID)


# --------------------------------------------------------------------------------------------
# the middleware


class SecurityMiddleware:
    """Pure ASGI (streaming stays streaming): header bounds, Host allowlist, Origin check, and
    ``?token=`` on a GET turned into a SameSite=Strict HttpOnly cookie (how the studio page
    opened from the printed URL authenticates, as Jupyter does)."""

    def __init__(self, app, settings: Settings, token: str | None):
        self.app = app
        self.hosts = HostPolicy(settings)
        self.cors = list(settings.cors_origins)
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw = scope.get("headers", [])
        if len(raw) > MAX_HEADERS or any(len(v) > MAX_HEADER_VALUE_BYTES for _, v in raw):
            return await _reply(
                send,
                scope,
                431,
                "invalid_request",
                f"at most {MAX_HEADERS} headers of {MAX_HEADER_VALUE_BYTES} bytes each",
                {"maxHeaders": MAX_HEADERS, "maxValueBytes": MAX_HEADER_VALUE_BYTES},
            )
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
        host_header = headers.get("host", "")
        host = split_host(host_header)
        if host is None:
            return await _reply(send, scope, 400, "host_not_allowed", "the request has no usable Host header", None)
        if not self.hosts.allows(host[0]):
            return await _reply(
                send,
                scope,
                403,
                "host_not_allowed",
                f"Host {host[0][:100]!r} is not allowed (VOICELANE_ALLOWED_HOSTS)",
                {"host": host[0][:100]},
            )
        origin = headers.get("origin")
        if (
            scope.get("method") in STATE_CHANGING
            and origin is not None
            and not origin_allowed(origin, host_header, self.cors)
        ):
            return await _reply(
                send,
                scope,
                403,
                "origin_not_allowed",
                "cross-origin requests that change state are refused (VOICELANE_CORS_ORIGINS)",
                {"origin": origin[:200]},
            )
        if scope.get("method") == "GET" and self.token:
            send = self._cookie_from_query(scope, send)
        return await self.app(scope, receive, send)

    def _cookie_from_query(self, scope, send):
        qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = (qs.get("token") or [""])[0]
        if not given or not token_matches(given, self.token):
            return send
        cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()

        async def send_with_cookie(msg):
            if msg["type"] == "http.response.start":
                msg = {**msg, "headers": [*msg.get("headers", []), (b"set-cookie", cookie)]}
            await send(msg)

        return send_with_cookie


async def _reply(send, scope, status: int, code: str, message: str, details: dict[str, Any] | None) -> None:
    trace = scope.get("state", {}).get("trace_id")
    ctx = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
    if ctx is not None and ctx.metrics is not None:  # refusals count in /metrics like any error
        ctx.metrics.error(code, status)
    payload = json.dumps(envelope(code, message, details, trace)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
