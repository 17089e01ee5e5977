"""Connection-level guards uvicorn's httptools protocol lacks: header and idle timeouts, a header
size limit, a connection cap that idle and slow connections cannot fill, and a drain that answers.

uvicorn closes a keep-alive connection after ``timeout_keep_alive`` only once a response has been
sent: a socket that connects and says nothing, or sends one header byte a second (slowloris), is
kept forever, and its ``limit_concurrency`` counts those connections, so a few hundred of them made
every route answer a bare-text 503. Here, per connection:

* before the first byte of a request (a fresh connection or between keep-alive requests), nothing
  for ``idle_timeout_s`` closes it;
* from a request's first byte, headers not complete within ``header_timeout_s`` get a 408 and the
  connection closes; more than ``max_header_bytes`` of request line and headers get a 431;
* past ``max_connections``, a new connection closes the oldest connection that is not running a
  request (one still sending its headers first, then idle ones). When every connection is running
  a request, the new one is still taken (up to ``HEALTH_RESERVE`` more), but ``EdgeApp`` answers only
  health probes on it, so ``/healthz`` and ``/readyz`` are never starved.

Limits are class attributes set once per process by ``configure`` (uvicorn builds one protocol
object per connection from the class).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: ASGI scope key set on requests that arrive on a connection over the cap
OVER_CAP = "visiongate.connection_over_cap"
#: connections taken beyond ``max_connections`` for health probes before new ones are closed unread
HEALTH_RESERVE = 32


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 60.0
    idle_timeout_s: float = 5.0
    max_header_bytes: int = 64 * 1024
    max_connections: int = 1000


def error_bytes(status: int, reason: str, kind: str, message: str, retry_after_s: int | None = None) -> bytes:
    """A complete HTTP/1.1 response with the gateway's JSON error body, closing the connection."""
    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close"]
    if retry_after_s is not None:
        head.append(f"retry-after: {retry_after_s}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits = ConnectionLimits()

    @classmethod
    def configure(cls, limits: ConnectionLimits) -> None:
        cls.limits = limits

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.limit_concurrency = None  # EdgeApp refuses (JSON, Retry-After, health probes exempt)
        self.opened_at = self.loop.time()
        self.over_cap = False
        self.draining = False
        self._timer: asyncio.TimerHandle | None = None
        self._in_headers = False
        self._header_bytes = 0
        self._headers_too_large = False

    # --- state -------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A request is being answered on this connection."""
        return self.cycle is not None and not self.cycle.response_complete and not self._in_headers

    def _eviction_rank(self) -> int:
        """Lower goes first: still sending headers (slow), then never sent a byte, then idle."""
        if self._in_headers:
            return 0
        return 1 if self.cycle is None else 2

    def _arm(self, delay: float, callback: object) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)  # type: ignore[arg-type]

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self, response: bytes | None = None) -> None:
        self._disarm()
        if not self.transport.is_closing():
            if response is not None:
                self.transport.write(response)
            self.transport.close()

    # --- connection events ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.idle_timeout_s, self._close)
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def _make_room(self) -> None:
        idle = [c for c in self.connections
                if isinstance(c, GuardedHttpToolsProtocol) and c is not self and not c.busy]
        if idle:
            min(idle, key=lambda c: (c._eviction_rank(), c.opened_at))._close()
        elif len(self.connections) > self.limits.max_connections + HEALTH_RESERVE:
            self._close()
        else:
            self.over_cap = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_headers and (self.cycle is None or self.cycle.response_complete):
            self._disarm()  # the idle timer; the header timer starts with the request's first byte
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # as uvicorn does (the gateway serves no websockets)
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._headers_too_large:
                self._close(error_bytes(431, "Request Header Fields Too Large", "HeadersTooLarge",
                                        f"the request line and headers passed {self.limits.max_header_bytes} bytes"))
            else:
                self._close(error_bytes(400, "Bad Request", "InvalidRequest", "the request is not valid HTTP/1.1"))

    # --- parser callbacks -------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._arm(self.limits.header_timeout_s, self._header_timeout)
        if self.over_cap:
            self.scope[OVER_CAP] = True  # type: ignore[literal-required]

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            self._headers_too_large = True
            raise ValueError("headers too large")  # httptools stops and raises HttpParserError

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()
        if (self.draining or self.over_cap) and self.cycle is not None:
            self.cycle.keep_alive = False

    def _header_timeout(self) -> None:
        self._close(error_bytes(408, "Request Timeout", "RequestTimeout",
                                f"the request headers were not complete within {self.limits.header_timeout_s:g} s"))

    # --- draining ------------------------------------------------------------------------------------

    def begin_drain(self, grace_s: float) -> None:
        """Shutting down: finish the request in progress (then close), let one whose headers are
        arriving complete, and close an idle connection after ``grace_s`` unless a request starts
        (its bytes may be on the wire already)."""
        self.draining = True
        if self.busy:
            self.cycle.keep_alive = False
        elif not self._in_headers:
            self._arm(grace_s, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if not self.busy and not self._in_headers:
            self._close()

    def shutdown(self) -> None:
        """uvicorn's own shutdown (worker processes): the same drain, with a short grace."""
        self.begin_drain(0.5)
