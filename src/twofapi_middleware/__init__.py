"""Zero-knowledge proof authentication (2FApi) for Python web APIs.

Wrap an ASGI app with :class:`TwoFApiMiddleware` or a WSGI app with
:class:`TwoFApiWSGIMiddleware`; configure both with :class:`Settings`.
"""

from .asgi import TwoFApiMiddleware
from .errors import (
    ConfigurationError,
    ProblemError,
    SchemaError,
    SchemaTooNew,
    StorageUnavailable,
    TwoFApiError,
)
from .models import AuditEvent, ClientStatus, Principal
from .service import TwoFApi
from .settings import Settings
from .storage import open_storage
from .wsgi import TwoFApiWSGIMiddleware

__all__ = [
    "AuditEvent",
    "ClientStatus",
    "ConfigurationError",
    "Principal",
    "ProblemError",
    "SchemaError",
    "SchemaTooNew",
    "Settings",
    "StorageUnavailable",
    "TwoFApi",
    "TwoFApiError",
    "TwoFApiMiddleware",
    "TwoFApiWSGIMiddleware",
    "open_storage",
]

__version__ = "0.1.0"
