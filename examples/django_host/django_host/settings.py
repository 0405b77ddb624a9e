"""Settings of the example host: an Open Klant-shaped Django project that emits through the outbox.

The database comes from DATABASE_URL (a libpq URL; default: the local PostgreSQL's `django_host`).
"""

from __future__ import annotations

import os

from psycopg import conninfo

_db = conninfo.conninfo_to_dict(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/django_host"))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-host-only-not-for-production")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "true"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "outbox.django",  # the outbox: migrations, `manage.py outbox`, admin, checks
    "onderwerpen",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "django_host.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", "django_host"),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
    }
}
# The outbox's tables stay out of Django's migrations and writes.
DATABASE_ROUTERS = ["outbox.django.router.OutboxRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "Europe/Amsterdam"
STATIC_URL = "static/"

# Open Klant's gates for the zaak events, and notifications-api-common's source.
ENABLE_CLOUD_EVENTS = os.environ.get("ENABLE_CLOUD_EVENTS", "true") == "true"
NOTIFICATIONS_SOURCE = os.environ.get("NOTIFICATIONS_SOURCE", "urn:nld:oin:01823288444:openklant")
OUTBOX_SCHEMA = os.environ.get("OUTBOX_SCHEMA", "outbox")

# The example API's bearer token (Open Klant uses DRF token authentication).
API_TOKEN = os.environ.get("EXAMPLE_API_TOKEN", "example-token")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"outbox": {"handlers": ["console"], "level": "INFO"}},
}
