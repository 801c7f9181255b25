"""The one settings object, from keyword arguments and ``TWOFAPI_*`` variables.

Only this module reads the environment. Every number has its default in
:mod:`twofapi_middleware.constants`; a rate limit or a lockout step set to 0
is switched off.

=====================================  =======================================
variable                               meaning
=====================================  =======================================
``TWOFAPI_ENV``                        ``development`` (default) or
                                       ``production``
``TWOFAPI_SIGNING_KEY``                Ed25519 PKCS#8 PEM (not with ``_FILE``)
``TWOFAPI_SIGNING_KEY_FILE``           path to that PEM
``TWOFAPI_VERIFICATION_KEYS_FILE``     PEM file of extra keys (rotation)
``TWOFAPI_STORAGE_URL``                ``memory://``, ``sqlite:///...``, ...
``TWOFAPI_ADMIN_SECRET``               32+ characters; admin calls need it
``TWOFAPI_ISSUER``                     token ``iss`` (default ``2fapi``)
``TWOFAPI_AUDIENCES``                  comma-separated (default ``default``)
``TWOFAPI_TOKEN_LEEWAY_SECONDS``       0 to 60 (default 10)
``TWOFAPI_REQUIRE_CHANNEL_BINDING``    ``true`` makes ``X-Channel-Binding``
                                       mandatory on guarded routes
``TWOFAPI_EXCLUDE_PATHS``              comma-separated exact paths
``TWOFAPI_EXCLUDE_PREFIXES``           comma-separated path prefixes
``TWOFAPI_CHECK_CREDENTIAL``           ``module:function`` first-factor hook
``TWOFAPI_RATE_LIMIT_PER_ADDRESS``     per minute (default 60, 0 = off)
``TWOFAPI_RATE_LIMIT_PER_CLIENT``      per minute and endpoint (10, 0 = off)
``TWOFAPI_RATE_LIMIT_WINDOW_SECONDS``  the limits' fixed window (60)
``TWOFAPI_TRUSTED_PROXY_HOPS``         ``X-Forwarded-For`` hops to trust
``TWOFAPI_LOCKOUT_THRESHOLD``          failures that lock (3)
``TWOFAPI_LOCKOUT_SECONDS``            first lockout (3600)
``TWOFAPI_LOCKOUT_MAX_SECONDS``        cap of doubling lockouts (86400)
``TWOFAPI_LOCKOUTS_BEFORE_SUSPENSION`` lockouts in a row that suspend (3,
                                       0 = never suspend, double instead)
``TWOFAPI_RECOVERY_ATTEMPTS``          wrong phrases before recovery is off
``TWOFAPI_ARGON2_MEMORY_KIB``          Argon2id memory (19456)
``TWOFAPI_ARGON2_TIME_COST``           Argon2id passes (2)
``TWOFAPI_ARGON2_PARALLELISM``         Argon2id lanes (1)
``TWOFAPI_ARGON2_CONCURRENCY``         Argon2 jobs at once (2)
``TWOFAPI_ARGON2_QUEUE``               Argon2 jobs waiting, then 429 (8)
``TWOFAPI_TOKEN_CACHE_SIZE``           verified-signature cache (10000)
``TWOFAPI_STORAGE_THREADS``            ASGI threads for blocking storage (16)
=====================================  =======================================
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import constants as k
from .errors import ConfigurationError
from .models import AuditEvent

logger = logging.getLogger(__name__)

CredentialCheck = Callable[[str, bytes], bool]
AuditHook = Callable[[AuditEvent], None]
Clock = Callable[[], float]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything configurable, validated on construction."""

    env: Literal["development", "production"] = "development"
    signing_key: str | None = field(default=None, repr=False)
    signing_key_file: str | None = None
    verification_keys: tuple[str, ...] = field(default=(), repr=False)
    storage_url: str = "memory://"
    admin_secret: str | None = field(default=None, repr=False)
    issuer: str = "2fapi"
    audiences: tuple[str, ...] = ("default",)
    token_leeway_seconds: int = k.TOKEN_LEEWAY_SECONDS
    require_channel_binding: bool = False
    exclude_paths: tuple[str, ...] = ()
    exclude_prefixes: tuple[str, ...] = ()
    check_credential: CredentialCheck | None = None
    accept_any_proof: bool = False
    rate_limit_per_address: int = k.RATE_LIMIT_PER_ADDRESS
    rate_limit_per_client: int = k.RATE_LIMIT_PER_CLIENT
    rate_limit_window_seconds: int = k.RATE_LIMIT_WINDOW_SECONDS
    trusted_proxy_hops: int = 0
    lockout_threshold: int = k.LOCKOUT_THRESHOLD
    lockout_seconds: int = k.LOCKOUT_FIRST_SECONDS
    lockout_max_seconds: int = k.LOCKOUT_MAX_SECONDS
    lockouts_before_suspension: int = k.LOCKOUTS_BEFORE_SUSPENSION
    recovery_attempts: int = k.RECOVERY_FAILURES_BEFORE_DISABLE
    argon2_memory_kib: int = k.ARGON2_MEMORY_KIB
    argon2_time_cost: int = k.ARGON2_TIME_COST
    argon2_parallelism: int = k.ARGON2_PARALLELISM
    argon2_concurrency: int = k.ARGON2_MAX_CONCURRENCY
    argon2_queue: int = k.ARGON2_QUEUE_LENGTH
    token_cache_size: int = 10_000
    storage_threads: int = 16
    audit_hook: AuditHook | None = None
    clock: Clock = time.time

    def __post_init__(self) -> None:
        if self.env not in ("development", "production"):
            raise ConfigurationError("TWOFAPI_ENV must be development or production")
        if self.signing_key and self.signing_key_file:
            raise ConfigurationError(
                "set TWOFAPI_SIGNING_KEY or TWOFAPI_SIGNING_KEY_FILE, not both"
            )
        secret = self.admin_secret
        if secret is not None and len(secret) < k.ADMIN_SECRET_MIN_CHARS:
            raise ConfigurationError(
                f"TWOFAPI_ADMIN_SECRET must be at least "
                f"{k.ADMIN_SECRET_MIN_CHARS} characters"
            )
        leeway = self.token_leeway_seconds
        if not 0 <= leeway <= k.TOKEN_LEEWAY_MAX_SECONDS:
            raise ConfigurationError(
                f"TWOFAPI_TOKEN_LEEWAY_SECONDS must be 0 to "
                f"{k.TOKEN_LEEWAY_MAX_SECONDS}"
            )
        if not self.audiences or not all(self.audiences):
            raise ConfigurationError("TWOFAPI_AUDIENCES needs at least one audience")
        for name in _NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} cannot be negative")
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise ConfigurationError("argon2_memory_kib is too small")
        limits = (
            self.argon2_concurrency,
            self.storage_threads,
            self.rate_limit_window_seconds,
        )
        if min(limits) < 1:
            raise ConfigurationError("concurrency settings must be at least 1")

    @property
    def production(self) -> bool:
        return self.env == "production"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def signing_key_pem(self) -> str | None:
        """The configured signing key PEM, read from its file if need be."""
        if self.signing_key_file:
            path = Path(self.signing_key_file)
            try:
                if path.stat().st_mode & 0o077:
                    logger.warning(
                        "TWOFAPI_SIGNING_KEY_FILE can be read by other users; "
                        "make it owner-only (chmod 600)"
                    )
                return path.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as error:
                raise ConfigurationError(
                    f"cannot read TWOFAPI_SIGNING_KEY_FILE: {error}"
                ) from None
        return self.signing_key

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Settings from ``TWOFAPI_*`` variables; keyword arguments win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (variable, kind) in _VARIABLES.items():
            raw = env.get(variable)
            if raw is not None and name not in overrides:
                values[name] = _convert(variable, raw, kind)
        keys_file = env.get("TWOFAPI_VERIFICATION_KEYS_FILE")
        if keys_file and "verification_keys" not in overrides:
            values["verification_keys"] = _read_pem_blocks(keys_file)
        values.update(overrides)
        return cls(**values)


_NON_NEGATIVE = (
    "rate_limit_per_address",
    "rate_limit_per_client",
    "trusted_proxy_hops",
    "lockout_threshold",
    "lockouts_before_suspension",
    "recovery_attempts",
    "token_cache_size",
    "argon2_queue",
)

_VARIABLES: dict[str, tuple[str, str]] = {
    "env": ("TWOFAPI_ENV", "str"),
    "signing_key": ("TWOFAPI_SIGNING_KEY", "str"),
    "signing_key_file": ("TWOFAPI_SIGNING_KEY_FILE", "str"),
    "storage_url": ("TWOFAPI_STORAGE_URL", "str"),
    "admin_secret": ("TWOFAPI_ADMIN_SECRET", "str"),
    "issuer": ("TWOFAPI_ISSUER", "str"),
    "audiences": ("TWOFAPI_AUDIENCES", "list"),
    "token_leeway_seconds": ("TWOFAPI_TOKEN_LEEWAY_SECONDS", "int"),
    "require_channel_binding": ("TWOFAPI_REQUIRE_CHANNEL_BINDING", "bool"),
    "exclude_paths": ("TWOFAPI_EXCLUDE_PATHS", "list"),
    "exclude_prefixes": ("TWOFAPI_EXCLUDE_PREFIXES", "list"),
    "check_credential": ("TWOFAPI_CHECK_CREDENTIAL", "callable"),
    "rate_limit_per_address": ("TWOFAPI_RATE_LIMIT_PER_ADDRESS", "int"),
    "rate_limit_per_client": ("TWOFAPI_RATE_LIMIT_PER_CLIENT", "int"),
    "rate_limit_window_seconds": ("TWOFAPI_RATE_LIMIT_WINDOW_SECONDS", "int"),
    "trusted_proxy_hops": ("TWOFAPI_TRUSTED_PROXY_HOPS", "int"),
    "lockout_threshold": ("TWOFAPI_LOCKOUT_THRESHOLD", "int"),
    "lockout_seconds": ("TWOFAPI_LOCKOUT_SECONDS", "int"),
    "lockout_max_seconds": ("TWOFAPI_LOCKOUT_MAX_SECONDS", "int"),
    "lockouts_before_suspension": ("TWOFAPI_LOCKOUTS_BEFORE_SUSPENSION", "int"),
    "recovery_attempts": ("TWOFAPI_RECOVERY_ATTEMPTS", "int"),
    "argon2_memory_kib": ("TWOFAPI_ARGON2_MEMORY_KIB", "int"),
    "argon2_time_cost": ("TWOFAPI_ARGON2_TIME_COST", "int"),
    "argon2_parallelism": ("TWOFAPI_ARGON2_PARALLELISM", "int"),
    "argon2_concurrency": ("TWOFAPI_ARGON2_CONCURRENCY", "int"),
    "argon2_queue": ("TWOFAPI_ARGON2_QUEUE", "int"),
    "storage_threads": ("TWOFAPI_STORAGE_THREADS", "int"),
    "token_cache_size": ("TWOFAPI_TOKEN_CACHE_SIZE", "int"),
}


def _convert(variable: str, raw: str, kind: str) -> Any:
    if kind == "str":
        return raw
    if kind == "list":
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"{variable} must be an integer") from None
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigurationError(f"{variable} must be true or false")
    return _import_callable(variable, raw)


def _import_callable(variable: str, spec: str) -> Callable[..., Any]:
    module_name, _, attribute = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError):
        raise ConfigurationError(f"{variable}: cannot import {spec!r}") from None
    if not callable(target):
        raise ConfigurationError(f"{variable}: {spec!r} is not callable")
    return target  # type: ignore[no-any-return]


def _read_pem_blocks(path: str) -> tuple[str, ...]:
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"cannot read verification keys: {error}") from None
    blocks, current = [], []
    for line in text.splitlines():
        current.append(line)
        if line.startswith("-----END "):
            blocks.append("\n".join(current) + "\n")
            current = []
    return tuple(blocks)
