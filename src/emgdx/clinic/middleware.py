"""ASGI middleware: request ids, request-body limit, logs without patient data, safe 500s."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

__all__ = ["RequestGuard"]

log = logging.getLogger("emgdx.clinic")

Scope = dict[str, Any]

#: Sent with every response. The page loads only its own script and styles; images come from
#: the API as blobs (and reports carry theirs as data: URLs, plus inline CSS); the report is
#: shown in a blob: frame, which inherits this policy. No other site is ever contacted.
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' blob: data:; frame-src blob:; connect-src 'self'; object-src 'none'; "
        b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


async def _send_error(send: Any, status: int, detail: str, request_id: str) -> None:
    payload = json.dumps({"detail": detail, "request_id": request_id}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


#: Most header bytes (names + values) and headers a request may carry: a token, cookies and
#: the usual browser headers take 1-3 KiB; more is an error or an attack (431).
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100


class RequestGuard:
    """Outermost layer of the app.

    * gives every request an id (``X-Request-ID`` header, ``scope["state"]["request_id"]``)
      and every response the :data:`SECURITY_HEADERS`;
    * refuses bodies over ``max_body_bytes`` with 413, before reading them when the client
      declares the length, else as soon as the limit is passed, and more than
      ``max_headers`` headers or ``max_header_bytes`` of them with 431;
    * logs one line per request: method, route *template* (``/api/v1/patients/{patient_id}``,
      never the ids or query), status, time, request id and clinic id: no patient data;
    * turns any unhandled exception into a 500 that says nothing about the server's insides
      (the traceback goes to the log, keyed by the request id).
    """

    def __init__(
        self,
        app: Any,
        max_body_bytes: int,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_headers: int = MAX_HEADERS,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = {"code": 0, "started": False}
        too_large = {"hit": False}

        headers = scope.get("headers") or []
        header_bytes = sum(len(k) + len(v) for k, v in headers)
        if len(headers) > self.max_headers or header_bytes > self.max_header_bytes:
            problem = (
                f"request headers too large: {len(headers)} headers, {header_bytes} bytes "
                f"(at most {self.max_headers} and {self.max_header_bytes} bytes)"
            )
            await _send_error(send, 431, problem, request_id)
            self._log(scope, 431, started, request_id)
            return
        declared = dict(headers).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                await _send_error(send, 400, "invalid Content-Length", request_id)
                self._log(scope, 400, started, request_id)
                return
            if length > self.max_body_bytes:
                await _send_error(send, 413, self._too_large(), request_id)
                self._log(scope, 413, started, request_id)
                return

        received = 0

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large["hit"] = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                if too_large["hit"]:
                    raise _BodyTooLarge
                status["code"] = int(message["status"])
                status["started"] = True
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(SECURITY_HEADERS)
                message = {**message, "headers": headers}
            elif too_large["hit"]:
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            if not status["started"]:
                await _send_error(send, 413, self._too_large(), request_id)
                status["code"] = 413
        except Exception:
            log.exception("unhandled error (request %s)", request_id)
            if not status["started"]:
                await _send_error(
                    send,
                    500,
                    "internal error; the administrator can find it in the log under the request id",
                    request_id,
                )
                status["code"] = 500
        self._log(scope, status["code"], started, request_id)

    def _too_large(self) -> str:
        return f"request body larger than the limit of {self.max_body_bytes / 2**20:g} MiB"

    @staticmethod
    def _log(scope: Scope, status: int, started: float, request_id: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or (
            "/static/…" if scope["path"].startswith("/static/") else "(unrouted)"
        )
        state = scope.get("state") or {}
        log.info(
            "%s %s %d %.0fms request=%s clinic=%s",
            scope.get("method"),
            template,
            status,
            1000 * (time.perf_counter() - started),
            request_id,
            state.get("clinic_id", "-"),
        )


class _BodyTooLarge(Exception):
    pass
