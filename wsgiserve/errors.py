"""Errors that carry their own HTTP answer, and start-up errors that carry a user-facing message."""

from __future__ import annotations

from http import HTTPStatus


class HTTPError(Exception):
    """A request the server refuses before (or instead of) calling the app.

    Each subclass fixes its status; the connection is always closed after the
    canned response, so nothing after the offending bytes is ever parsed.
    """

    status: int = 400
    # For the operator, when the refusal points at a set-up mistake rather than a bad
    # client: a %-format taking the peer's address, logged once a minute at most.
    hint: str = ""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or HTTPStatus(self.status).phrase)
        self.detail = detail or HTTPStatus(self.status).phrase
        self.head_request = False  # the refused request was a HEAD: no body (RFC 9110 §9.3.2)

    def body(self) -> bytes:
        """The plain-text body of the answer."""
        return f"{self.status} {HTTPStatus(self.status).phrase}\n".encode("ascii")

    def response_bytes(self, date_line: bytes = b"", server_line: bytes = b"") -> bytes:
        """The complete HTTP/1.1 response for this error, ending with `Connection: close`."""
        phrase = HTTPStatus(self.status).phrase
        body = self.body()
        return (
            f"HTTP/1.1 {self.status} {phrase}\r\n".encode("ascii")
            + date_line
            + server_line
            + b"Content-Type: text/plain; charset=utf-8\r\n"
            + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            + (b"" if self.head_request else body)
        )


class BadRequest(HTTPError):
    status = 400


class UwsgiPeerForbidden(HTTPError):
    """A uwsgi peer outside --uwsgi-allow-ips (its vars would set the client's address)."""

    status = 403
    hint = (
        "refused a uwsgi connection from %s: the peer is not in --uwsgi-allow-ips. Add the "
        "web server's address there (or * when only it can reach this port)"
    )


class ProxyHeaderForbidden(HTTPError):
    """A PROXY protocol header from a peer outside --proxy-allow-from."""

    status = 403
    hint = (
        "refused a PROXY protocol header from %s: the peer is not in --proxy-allow-from. Add "
        "the load balancer's address there (or * when only it can reach this port)"
    )


class UwsgiOnHttpListener(BadRequest):
    """A uwsgi packet (first byte 0, modifier1 of a WSGI request) sent to an HTTP listener."""

    hint = (
        "a uwsgi packet arrived on an HTTP listener (from %s): nginx's uwsgi_pass and Apache's "
        "mod_proxy_uwsgi need a uwsgi listener. Bind one with -b uwsgi://HOST:PORT, or use "
        "proxy_pass/ProxyPass http:// to this one"
    )


class UnexpectedProxyHeader(BadRequest):
    """A PROXY protocol header where the listener reads none (or only the other version)."""

    hint = (
        "a PROXY protocol header arrived from %s, but --proxy-protocol is off or names the "
        "other version. Start with --proxy-protocol auto (the balancer's address in "
        "--proxy-allow-from), or stop the balancer sending it (HAProxy: send-proxy)"
    )


class PayloadTooLarge(HTTPError):
    status = 413


class URITooLong(HTTPError):
    status = 414


class ExpectationFailed(HTTPError):
    status = 417


class HeaderFieldsTooLarge(HTTPError):
    status = 431


class NotImplementedCoding(HTTPError):
    """A transfer coding or method we do not implement (RFC 9110 §15.6.2)."""

    status = 501


class VersionNotSupported(HTTPError):
    status = 505


class RequestTimeout(HTTPError):
    status = 408


class ServiceUnavailable(HTTPError):
    """Too many requests in this worker (--limit-concurrency); the client may retry."""

    status = 503

    def response_bytes(self, date_line: bytes = b"", server_line: bytes = b"") -> bytes:
        return super().response_bytes(date_line + b"Retry-After: 1\r\n", server_line)


class ClientDisconnected(OSError):
    """Raised in a worker thread when the client went away mid-request or mid-response."""


class BodyFramingError(OSError):
    """Raised by `wsgi.input` when the request body turned out malformed or truncated."""

    status = "400 Bad Request"


class BodyTooLarge(BodyFramingError):
    """The body grew past --limit-request-body."""

    status = "413 Content Too Large"


class BodyCutShort(BodyFramingError):
    """The client closed its side before the body it announced had arrived."""


class TrailerTooLarge(BodyFramingError):
    """The trailer section broke --limit-request-fields or --limit-request-field_size."""

    status = "431 Request Header Fields Too Large"


class BodyTimeout(BodyFramingError):
    """The client stopped sending the body for --body-timeout seconds."""

    status = "408 Request Timeout"


class StartupError(Exception):
    """A problem that stops the server from starting; the message is shown to the user as is."""

    exit_code = 1


class AppLoadError(StartupError):
    exit_code = 4
