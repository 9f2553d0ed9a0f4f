"""A minimal single-file Django project, configured in code, mirroring the Flask app's routes.

Django turns view exceptions into its own 500 page (``DEBUG = False``, so no traceback).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="wsgiserve-integration-tests-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.http import (
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path


def stream_line(index: int) -> str:
    """One line of the streamed body; identical to the Flask app's."""
    return f"chunk-{index:05d}:" + "x" * 1000 + "\n"


def echo(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {
            "path": request.path,
            "args": {key: request.GET.getlist(key) for key in request.GET},
        }
    )


def form(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    return JsonResponse({"form": {key: request.POST.getlist(key) for key in request.POST}})


def upload(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    blob = request.FILES.get("file")
    if blob is None:  # Flask answers 400 for a missing file too
        return HttpResponse(status=400)
    data = blob.read()
    return JsonResponse(
        {
            "filename": blob.name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "note": request.POST.get("note"),
        }
    )


def stream(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    count = int(request.GET.get("n", "100"))

    def generate() -> Iterator[str]:
        for index in range(count):
            yield stream_line(index)

    return StreamingHttpResponse(generate(), content_type="text/plain")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("kaboom-SECRET-detail")


urlpatterns = [
    path("echo", echo),
    path("form", form),
    path("upload", upload),
    path("stream", stream),
    path("boom", boom),
]

application: WSGIHandler = get_wsgi_application()
app = application
