"""Every refusal of the worker's HTTP server is a JSON 4xx: ``{"error":
code, "detail": sentence}``, and nothing a client sends turns into a 5xx.

Three places produce refusals, and each needs its own hook:

- a handler or the router (404, 405, an :class:`ApiError`, a body that does
  not decode): :func:`json_errors`, a middleware;
- aiohttp itself, *before* any handler or middleware runs, when the
  request line, a header, the chunked framing or the ``Content-Encoding``
  cannot be parsed: ``RequestHandler.handle_error`` answers those with a
  ``text/plain`` 400. aiohttp has no public hook for that answer, so
  :class:`JsonErrorRunner` serves the app with :class:`JsonErrorProtocol`,
  a ``RequestHandler`` whose ``handle_error`` answers JSON;
- a body that fails to decode while a handler reads it (a ``gzip`` body
  that is not gzip, chunking broken after the first chunk): aiohttp raises
  ``RequestPayloadError`` into the handler, and an exception that escapes a
  handler is a 500 in aiohttp. Both hooks above map it to a 400.

A genuine bug is still a 500 (JSON too), logged with its traceback; client
errors are logged at debug level only, so a scanner cannot flood the log.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A request refused with a 4xx (or a 503), and why."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers or {}

    def response(self) -> web.Response:
        return web.json_response({"error": self.code, "detail": self.detail}, status=self.status, headers=self.headers)


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return ApiError(status, code, detail, headers).response()


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               408: "request_timeout", 411: "length_required", 413: "body_too_large", 414: "uri_too_long",
               415: "unsupported_media_type", 431: "headers_too_large"}


def _first_line(message: str) -> str:
    """aiohttp's parser messages quote the offending bytes on later lines;
    the first line says what is wrong."""
    return (message.strip().splitlines() or [""])[0].rstrip(": ")[:200]


def client_error(exc: BaseException) -> ApiError | None:
    """The refusal for an exception caused by what the client sent, or
    ``None`` when ``exc`` is not the client's doing (a bug: a 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, web.HTTPException) and 400 <= exc.status < 500:
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return ApiError(exc.status, _HTTP_CODES.get(exc.status, "bad_request"), exc.reason or "bad request", headers)
    if isinstance(exc, web.RequestPayloadError):
        # raised into a handler reading the body; the parser's error is its cause
        cause = exc.__cause__
        if isinstance(cause, http_exceptions.ContentEncodingError):
            return ApiError(400, "bad_content_encoding", "the body does not decode as its Content-Encoding says")
        if isinstance(cause, http_exceptions.TransferEncodingError):
            return ApiError(400, "bad_chunked_encoding", f"the chunked body is malformed: {_first_line(cause.message)}")
        if isinstance(cause, http_exceptions.ContentLengthError):
            return ApiError(400, "incomplete_body", "the body is shorter than its Content-Length")
        return ApiError(400, "bad_body", f"the body cannot be read: {_first_line(str(cause or exc))}")
    if isinstance(exc, http_exceptions.ContentEncodingError):
        # only raised before the body is read for an encoding aiohttp has no
        # decoder for here (br, zstd); identity, gzip and deflate decode
        return ApiError(415, "unsupported_content_encoding", "this server decodes only gzip and deflate bodies (Content-Encoding)")
    if isinstance(exc, http_exceptions.TransferEncodingError):
        return ApiError(400, "bad_chunked_encoding", f"the chunked body is malformed: {_first_line(exc.message)}")
    if isinstance(exc, http_exceptions.InvalidURLError):
        return ApiError(400, "bad_url", f"the request target is not a valid URL: {_first_line(exc.message)}")
    if isinstance(exc, http_exceptions.BadStatusLine):
        return ApiError(400, "bad_request_line", f"the request line is malformed: {_first_line(exc.message)}")
    if isinstance(exc, http_exceptions.LineTooLong):
        return ApiError(400, "line_too_long", "the request line or a header is too long")
    if isinstance(exc, http_exceptions.HttpProcessingError):
        code = exc.code if 400 <= exc.code < 500 else 400
        return ApiError(code, "bad_request", f"the request is malformed: {_first_line(exc.message) or 'unparsable HTTP'}")
    return None


@web.middleware
async def json_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Refusals from the router and the handlers as JSON (404 and 405
    included); anything else propagates to :class:`JsonErrorProtocol`."""
    try:
        return await handler(request)
    except (ApiError, web.HTTPException, web.RequestPayloadError) as exc:
        refusal = client_error(exc)
        if refusal is None:  # a 3xx, a 2xx or a 5xx raised on purpose: aiohttp's own answer
            raise
        log.debug("refused %s %s: %s %s", request.method, request.path, refusal.status, refusal.code)
        return refusal.response()


class JsonErrorProtocol(RequestHandler):
    """aiohttp's connection handler with JSON answers for what it refuses
    before any handler runs (and for exceptions that escape one)."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
        refusal = client_error(exc) if exc is not None else None
        if refusal is None and 400 <= status < 500:  # a parse error without an exception object
            refusal = ApiError(status, _HTTP_CODES.get(status, "bad_request"), _first_line(message or "") or "bad request")
        if refusal is not None:
            self.logger.debug("refused a request from %s: %s %s", request.remote, refusal.status, refusal.code)
        else:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        if request.writer.output_size > 0:  # as aiohttp: the answer is on its way, the connection is broken
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        if refusal is not None:
            response = refusal.response()
        elif status == 504:  # aiohttp's code for a handler that timed out
            response = error_response(504, "timeout", "the request took too long")
        else:
            response = error_response(500, "internal_error", "the worker failed to answer; the error is in its log")
        response.force_close()  # as aiohttp: after a parse error the connection's framing cannot be trusted
        return response


class JsonErrorServer(web.Server):
    """``web.Server`` that speaks :class:`JsonErrorProtocol`."""

    def __call__(self) -> RequestHandler:
        return JsonErrorProtocol(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer refusals as JSON. aiohttp
    hard-codes its ``RequestHandler`` in ``web.Server.__call__``; the server
    is rebuilt here with the same arguments and our protocol class."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return JsonErrorServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
