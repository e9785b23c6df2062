"""One error type carrying a gRPC status code, shared by server and client.

The server raises it to answer a request with a precise code (INVALID_ARGUMENT,
NOT_FOUND, ...); the client raises it so callers can branch on `.code` while the CLI
still treats it as an ordinary `ServingError` (one line, exit 2).
"""

from __future__ import annotations

import logging
import uuid

import grpc

from imfuse.errors import ServingError

# TF Serving's mapping of canonical codes to HTTP statuses (net_http ToHTTPStatusCode).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.UNKNOWN: 500,
}

log = logging.getLogger("imfuse.serving")

_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


class StatusError(ServingError):
    """A request failed with a gRPC status `code` and a human message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def invalid_argument(message: str) -> StatusError:
    """What the client sent is wrong (gRPC INVALID_ARGUMENT, REST 400)."""
    return StatusError(grpc.StatusCode.INVALID_ARGUMENT, message)


def code_from_value(value: int) -> grpc.StatusCode:
    """TensorFlow error codes share gRPC's numbering (tf.errors.*.error_code)."""
    return _BY_VALUE.get(int(value), grpc.StatusCode.UNKNOWN)


def code_from_http(status: int) -> grpc.StatusCode:
    """Best inverse of HTTP_STATUS for REST clients (first code with that status)."""
    return next((code for code, http in HTTP_STATUS.items() if http == status and code is not grpc.StatusCode.OK),
                grpc.StatusCode.UNKNOWN)


# Codes that mean "the server failed": their detail stays in the server log.
SERVER_FAULT_CODES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS})


def error_id() -> str:
    """A short id that ties a generic error reply to its server log line."""
    return uuid.uuid4().hex[:12]


def reply_error(exc: BaseException, where: str) -> StatusError:
    """The error to send for `exc`: client faults as they are, server faults generic.

    A server fault (an unexpected exception, an INTERNAL-class status, a model problem)
    is logged here with its traceback and an id; the reply carries only the id, never
    exception text or server paths.
    """
    from imfuse.errors import ImfuseError, ModelError

    if isinstance(exc, StatusError) and exc.code not in SERVER_FAULT_CODES:
        return exc
    if isinstance(exc, ImfuseError) and not isinstance(exc, (StatusError, ModelError)):
        return invalid_argument(str(exc))
    eid = error_id()
    log.error("internal error %s in %s: %s: %s", eid, where, type(exc).__name__, exc, exc_info=exc)
    return StatusError(grpc.StatusCode.INTERNAL, f"internal server error (error id {eid}; details are in the server log)")
