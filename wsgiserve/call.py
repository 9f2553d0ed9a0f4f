"""Worker side: run the app for one request.

The iterable's `close()` is always called: after success, after an error and
after the client went away. An exception before the response head went out
becomes a plain 500 (a 400 when the request body itself was malformed); after
it, the connection is aborted so the client cannot take a truncated body for a
whole one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from threading import get_ident
from typing import Any

from .errors import BodyCutShort, BodyFramingError, ClientDisconnected
from .exchange import Exchange
from .response import InvalidResponse, Response, plain_error

log = logging.getLogger("wsgiserve.error")

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def run_app(app: App, exchange: Exchange) -> None:
    """Call `app` for `exchange` and hand the whole response to the loop. Never raises.

    Whatever happens — the client gone at any moment, the app raising anything,
    `BaseException` included — the loop hears exactly once how the request ended, which
    is what gives its pool slot and its connection back (the `finally` below).
    """
    try:
        if exchange.gate.closed:  # the client left while the request waited for a thread
            return
        exchange.thread_id = get_ident()
        exchange.app_started = time.monotonic()
        clock = exchange.clock
        if clock.pre_request is not None:
            _hook(clock.pre_request, clock.hook_worker, HookRequest(exchange.environ))
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
            if response.started:  # an aborted response is still a line in the access log
                _log_access(exchange, response)
            return
        except BaseException as error:  # SystemExit from an app is its error, not ours to obey
            _close(result, exchange)
            _fail(exchange, response, error)
            return
        if type(result) is not list:  # a list has no close(); looking costs an AttributeError
            _close(result, exchange)
        if (
            clock.access_log is not None
            or clock.stats is not None
            or clock.post_request is not None
        ):
            _log_access(exchange, response)
        try:
            response.complete()
        except ClientDisconnected:
            log.debug("client went away at the end of %s", _describe(exchange))
    finally:
        if not exchange.ended:
            exchange.abort()


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
        except BaseException:
            log.exception("error closing the app's iterable for %s", _describe(exchange))


def _fail(exchange: Exchange, response: Response, error: BaseException) -> None:
    if isinstance(error, BodyFramingError):
        # A client that went away mid-upload is everyday traffic: not worth an INFO line.
        level = logging.DEBUG if isinstance(error, BodyCutShort) else logging.INFO
        log.log(level, "bad request body for %s: %s", _describe(exchange), error)
        status, message = error.status, error.status + "\n"
    else:
        log.error("error handling %s", _describe(exchange), exc_info=error)
        status, message = "500 Internal Server Error", "500 Internal Server Error\n"
    if response.head_sent:
        _log_access(exchange, response)  # what went out, before the abort
        return  # run_app aborts: a cut stream must not pass for a whole one
    fallback = Response(exchange)
    status, headers, body = plain_error(status, message)
    if isinstance(error, BodyFramingError):
        headers.append(("Connection", "close"))  # the rest of the body cannot be trusted
    try:
        fallback.start_response(status, headers)
        fallback.finish_with(body)
        _log_access(exchange, fallback)
        fallback.complete()
    except ClientDisconnected:
        pass  # run_app aborts


def _log_access(exchange: Exchange, response: Response) -> None:
    clock = exchange.clock
    duration = time.monotonic() - exchange.started_at
    if clock.access_log is not None:
        try:
            clock.access_log(
                exchange.environ, response.code, response.app_headers, response.sent, duration
            )
        except Exception:
            log.exception("could not write the access log")
    if clock.stats is not None:
        clock.stats.observe(
            exchange.environ["REQUEST_METHOD"],
            response.code,
            duration,
            response.sent,
            getattr(exchange.body, "received", 0),
        )
    if clock.post_request is not None:
        view = HookResponse(response.status, response.code, response.app_headers, response.sent)
        _hook(
            clock.post_request,
            clock.hook_worker,
            HookRequest(exchange.environ),
            exchange.environ,
            view,
        )


class HookRequest:
    """What a `pre_request`/`post_request` hook sees as `req` (gunicorn's attribute names)."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.method = environ["REQUEST_METHOD"]
        self.path = environ["PATH_INFO"]
        self.query = environ["QUERY_STRING"]
        self.uri = environ.get("RAW_URI", self.path)
        self.version = environ["SERVER_PROTOCOL"]
        self.headers = [
            (key[5:].replace("_", "-"), value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        ]


class HookResponse:
    """What a `post_request` hook sees as `resp`."""

    def __init__(self, status: str, code: int, headers: list[tuple[str, str]], sent: int) -> None:
        self.status_code = code
        self.status = status  # "200 OK", as gunicorn's resp.status
        self.headers = headers
        self.sent = sent


def _hook(hook: Callable[..., Any], *args: Any) -> None:
    try:
        hook(*args)
    except BaseException:
        log.exception("the %s hook failed", getattr(hook, "__name__", "request"))


def _describe(exchange: Exchange) -> str:
    environ = exchange.environ
    return f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"
