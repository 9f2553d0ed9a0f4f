"""The apps people run, for the framework scenarios: the figure a user will feel.

* `flask_json`: a Flask route returning JSON with `jsonify`.
* `django_page`: a Django view rendering a small template through Django's default
  middleware stack (security, sessions, common, CSRF, auth, messages, clickjacking), with
  no database: nothing in the request path queries one.

Both are imported by the server under test only; keep them as a user would write them.
"""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings as django_settings
from flask import Flask, jsonify

from benchmarks.apps import FRAMEWORK_ITEMS as ITEMS

flask_app = Flask(__name__)


@flask_app.get("/")
def _items() -> Any:
    return jsonify(items=ITEMS, count=len(ITEMS))


flask_json = flask_app.wsgi_app  # the WSGI callable, as `flask_app` itself would be served

TEMPLATE = """<!doctype html>
<html><head><title>{{ title }}</title></head>
<body><h1>{{ title }}</h1>
<ul>{% for item in items %}<li>{{ item.name }}: {{ item.price|floatformat:2 }}</li>{% endfor %}</ul>
</body></html>
"""

django_settings.configure(
    DEBUG=False,
    SECRET_KEY="benchmark-only-not-secret",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    DATABASES={},
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
    ],
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {
                "loaders": [("django.template.loaders.locmem.Loader", {"page.html": TEMPLATE})]
            },
        }
    ],
    USE_TZ=True,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402  (needs settings first)
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.shortcuts import render  # noqa: E402
from django.urls import path  # noqa: E402


def _page(request: HttpRequest) -> HttpResponse:
    return render(request, "page.html", {"title": "Hello, World!", "items": ITEMS})


urlpatterns = [path("", _page)]
django_page = get_wsgi_application()
