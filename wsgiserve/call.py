"""Worker side: run the app for one request.

The iterable's `close()` is always called: after success, after an error and
after the client went away. An exception before the response head went out
becomes a plain 500 (a 400 when the request body itself was malformed); after
it, the connection is aborted so the client cannot take a truncated body for a
whole one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from .errors import BodyFramingError, ClientDisconnected
from .exchange import Exchange
from .response import InvalidResponse, Response, plain_error

log = logging.getLogger("wsgiserve.error")

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def run_app(app: App, exchange: Exchange) -> None:
    """Call `app` for `exchange` and hand the whole response to the loop. Never raises."""
    if exchange.gate.closed:  # the client left while the request waited for a thread
        exchange.abort()
        return
    response = Response(exchange)
    result: Any = None
    try:
        result = app(exchange.environ, response.start_response)
        if type(result) is list or type(result) is tuple:
            if not response.started:
                raise InvalidResponse("the app returned without calling start_response")
            response.finish_with(result[0] if len(result) == 1 else b"".join(result))
        else:
            _stream(response, result, exchange.head_request)
    except ClientDisconnected:
        log.debug("client went away during %s", _describe(exchange))
        _close(result, exchange)
        exchange.abort()
        return
    except Exception as error:
        _close(result, exchange)
        _fail(exchange, response, error)
        return
    _close(result, exchange)
    _log_access(exchange, response)
    response.complete()


def _stream(response: Response, result: Iterable[bytes], head_request: bool) -> None:
    write = response.write
    for block in result:
        write(block)
        if head_request and response.started:
            break  # a HEAD response has no body: no need to produce it
    if not response.started:
        raise InvalidResponse("the app returned without calling start_response")
    response.finish()


def _close(result: Any, exchange: Exchange) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("error closing the app's iterable for %s", _describe(exchange))


def _fail(exchange: Exchange, response: Response, error: Exception) -> None:
    if isinstance(error, BodyFramingError):
        log.info("bad request body for %s: %s", _describe(exchange), error)
        status, message = "400 Bad Request", "400 Bad Request\n"
    else:
        log.error("error handling %s", _describe(exchange), exc_info=error)
        status, message = "500 Internal Server Error", "500 Internal Server Error\n"
    if response.head_sent:
        exchange.abort()
        return
    exchange.keep_alive = exchange.keep_alive and not isinstance(error, BodyFramingError)
    fallback = Response(exchange)
    status, headers, body = plain_error(status, message)
    try:
        fallback.start_response(status, headers)
        fallback.finish_with(body)
        _log_access(exchange, fallback)
        fallback.complete()
    except ClientDisconnected:
        exchange.abort()


def _log_access(exchange: Exchange, response: Response) -> None:
    access_log = exchange.clock.access_log
    if access_log is not None:
        try:
            access_log(exchange, response.code, response.sent)
        except Exception:
            log.exception("could not write the access log")


def _describe(exchange: Exchange) -> str:
    environ = exchange.environ
    return f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"
