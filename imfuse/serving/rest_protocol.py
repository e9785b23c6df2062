"""uvicorn's h11 protocol plus a deadline for receiving each request's headers.

uvicorn closes idle keep-alive connections (timeout_keep_alive) but waits forever for
a client that connects and then sends its request line and headers slowly, or not at
all; each such connection holds a slot of limit_concurrency. Here a connection waiting
for headers (fresh, or with a partial next request) is closed after `header_timeout_s`.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderDeadlineH11Protocol(H11Protocol):
    """Close connections whose request headers do not arrive within `header_timeout_s`."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._seen_cycle = None
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def _waiting_for_headers(self) -> bool:
        if self.cycle is not self._seen_cycle:
            return False  # a request's headers arrived since we last looked
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._expire)

    def _cancel(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_headers():
            self._arm()  # bytes of a (next) request: its headers are now on the clock
        super().data_received(data)
        if self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle
            self._cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle is not self._seen_cycle:  # a pipelined request started right away
            self._seen_cycle = self.cycle

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)


def with_header_timeout(seconds: float) -> type[HeaderDeadlineH11Protocol]:
    """A protocol class for uvicorn.Config(http=...) with its own header deadline."""
    return type("HeaderDeadlineH11", (HeaderDeadlineH11Protocol,), {"header_timeout_s": seconds})
