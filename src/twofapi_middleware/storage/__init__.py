"""Storage backends, chosen by URL.

=============================  ==========================  ===================
URL                            backend                     extra to install
=============================  ==========================  ===================
``memory://``                  :class:`MemoryStorage`      (none)
``sqlite:///relative.db``      ``SQLStorage``              ``sql``
``postgresql://...``           ``SQLStorage`` (psycopg 3)  ``postgresql``
``mysql://...``                ``SQLStorage`` (PyMySQL)    ``mysql``
``redis://``, ``rediss://``    ``RedisStorage``            ``redis``
=============================  ==========================  ===================

Drivers are imported only when their URL is opened; a missing one raises a
:class:`~twofapi_middleware.errors.ConfigurationError` naming the extra.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ConfigurationError
from .base import SCHEMA_VERSION, Storage
from .memory import MemoryStorage

__all__ = ["SCHEMA_VERSION", "MemoryStorage", "Storage", "open_storage"]

# scheme -> (module, class, extra naming the drivers it needs)
_BACKENDS: dict[str, tuple[str, str, str]] = {
    "sqlite": ("sql", "SQLStorage", "sql"),
    "postgresql": ("sql", "SQLStorage", "postgresql"),
    "postgres": ("sql", "SQLStorage", "postgresql"),
    "mysql": ("sql", "SQLStorage", "mysql"),
    "mariadb": ("sql", "SQLStorage", "mysql"),
    "redis": ("redis", "RedisStorage", "redis"),
    "rediss": ("redis", "RedisStorage", "redis"),
}


def scheme_of(url: str) -> str:
    """The backend scheme of ``url``, without any ``+driver`` suffix."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigurationError(f"storage URL has no scheme: {redact_url(url)}")
    return scheme.split("+", 1)[0].lower()


def redact_url(url: str) -> str:
    """``url`` with any password replaced, safe to print or log."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    credentials, at, host = authority.rpartition("@")
    if at and ":" in credentials:
        user = credentials.split(":", 1)[0]
        authority = f"{user}:***@{host}"
    return f"{scheme}{sep}{authority}{slash}{path}"


def open_storage(url: str, **options: Any) -> Storage:
    """Open the backend that ``url`` names. Does not check the schema."""
    scheme = scheme_of(url)
    if scheme == "memory":
        return MemoryStorage()
    try:
        module_name, class_name, extra = _BACKENDS[scheme]
    except KeyError:
        raise ConfigurationError(
            f"unknown storage URL scheme {scheme!r}; use memory, sqlite, "
            "postgresql, mysql, redis or rediss"
        ) from None
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ImportError as error:
        raise ConfigurationError(
            f"storage URL {scheme}:// needs the {extra!r} extra: "
            f"pip install 'twofapi-middleware[{extra}]' ({error})"
        ) from None
    backend: Storage = getattr(module, class_name)(url, **options)
    return backend
