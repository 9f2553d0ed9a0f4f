"""TLS: an `ssl.SSLContext` from the --certfile, --keyfile, --ca-certs, --cert-reqs, --ciphers."""

from __future__ import annotations

import ssl

from .errors import StartupError
from .settings import Settings


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context, or None when no certificate is configured.

    Raises:
        StartupError: a file is missing or unreadable, or the key does not match.
    """
    if not settings.certfile:
        if settings.keyfile:
            raise StartupError("--keyfile was given without --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.certfile, settings.keyfile)
    except OSError as error:
        if isinstance(error, ssl.SSLError) and not settings.keyfile:
            raise StartupError(
                f"--certfile {settings.certfile}: no private key in it. Give the key with "
                "--keyfile (or put the key in the same PEM file)."
            ) from None
        raise StartupError(f"cannot load --certfile/--keyfile: {error}") from None
    # gunicorn's numbering: 0 = CERT_NONE, 1 = CERT_OPTIONAL, 2 = CERT_REQUIRED
    context.verify_mode = ssl.VerifyMode(settings.cert_reqs)
    if settings.ca_certs:
        try:
            context.load_verify_locations(settings.ca_certs)
        except (OSError, ssl.SSLError) as error:
            raise StartupError(f"cannot load --ca-certs: {error}") from None
    elif settings.cert_reqs:
        raise StartupError("--cert-reqs asks for client certificates: give --ca-certs too")
    if settings.ciphers:
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError as error:
            raise StartupError(f"--ciphers {settings.ciphers!r}: {error}") from None
    return context
