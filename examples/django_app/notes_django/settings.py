"""Settings of the Django notes example.

No database: the notes live in memory and the 2FApi client on
``request.user`` is not a database user. ``TWOFAPI_*`` environment
variables (``run.py`` sets ``TWOFAPI_STORAGE_URL``) configure 2FApi.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "notes-example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    # 2FApi's endpoints need no CSRF exemption, and neither do views
    # called with a bearer token.
    "django.middleware.csrf.CsrfViewMiddleware",
    "twofapi_middleware.integrations.django.TwoFApiMiddleware",
]
ROOT_URLCONF = "notes_django.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# Settings fields of twofapi_middleware; the environment fills in the rest.
TWOFAPI: dict[str, object] = {}

# Notes can be large; Django refuses bodies over 2.5 MB by default.
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024
