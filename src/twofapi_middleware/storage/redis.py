"""Redis storage through redis-py's synchronous client.

Every key starts with a prefix, ``twofapi:`` unless the ``prefix`` keyword
or the URL's ``prefix`` query parameter (``redis://host/0?prefix=myapp:``)
names another; the parameter is read here and never reaches redis-py::

    <prefix>client:<client id>      hash   the client record
    <prefix>challenge:<client id>   hash   the client's one pending challenge
    <prefix>challenges              zset   client ids scored by expiry
    <prefix>counter:<key>           hash   a rate-limit window's end and count
    <prefix>schema_version          string the schema version
    <prefix>migrate_lock            string a migration's token while it runs

Each write is one Lua script or ``MULTI`` block, which Redis runs without
interleaving any other command: ``add_client`` writes only if the key is
absent, ``replace_client`` compares the stored revision before writing,
``put_challenge`` overwrites the client's single challenge slot, and
``take_challenge`` deletes that slot only if it holds the challenge asked
for, so another client's challenge is never looked at. Keying challenges by
client makes "one pending challenge per client" a property of the layout
rather than of bookkeeping. ``hit`` starts a counter over only when a later
window begins, so a worker whose clock lags counts in the stored window.

Key TTLs, computed from the caller's ``now``, end challenges and counters
``PURGE_GRACE_SECONDS`` after they expire. They only reclaim space: expiry is
decided by the caller against the stored times. :meth:`RedisStorage.purge`
removes expired challenges by the expiry index, for callers whose clock runs
ahead of the server's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import secrets
import time
import typing
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import (
    ConfigurationError,
    SchemaError,
    SchemaTooNew,
    StorageUnavailable,
)
from ..models import Challenge, ClientRecord, ClientStatus
from . import redact_url
from .base import MIGRATION_LOCK_SECONDS, PURGE_GRACE_SECONDS, SCHEMA_VERSION

__all__ = ["RedisStorage"]

_DEFAULT_PREFIX = "twofapi:"
_PURGE_BATCH = 500

# The migration lock expires by itself, so a migration that died holding it
# delays the next one this long at most; a live one is done far sooner.
_MIGRATION_LOCK_TTL_MS = 30_000
_MIGRATION_LOCK_POLL_SECONDS = 0.05

# KEYS[1] client; ARGV field, value, ...
_ADD_CLIENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('HGETALL', KEYS[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return false
"""

# KEYS[1] client; ARGV[1] expected revision, then field, value, ...
_REPLACE_CLIENT = """
if redis.call('HGET', KEYS[1], 'revision') ~= ARGV[1] then
    return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

# KEYS[1] challenge slot, KEYS[2] expiry index
# ARGV[1] client id, ARGV[2] expires at, ARGV[3] TTL in ms, then field, value, ...
_PUT_CHALLENGE = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS[1] challenge slot, KEYS[2] expiry index; ARGV[1] challenge id,
# ARGV[2] client id
_TAKE_CHALLENGE = """
if redis.call('HGET', KEYS[1], 'challenge_id') ~= ARGV[1] then
    return false
end
local fields = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return fields
"""

# KEYS[1] challenge slot, KEYS[2] expiry index; ARGV[1] client id,
# ARGV[2] horizon. A challenge put since the index was read is kept.
_PURGE_CHALLENGE = """
local expires_at = redis.call('HGET', KEYS[1], 'expires_at')
if expires_at and tonumber(expires_at) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS[1] counter; ARGV[1] window end, ARGV[2] TTL in ms. Answers the count
# and the end of the window counted in: a stored window ending no earlier
# than ARGV[1] keeps counting, with its TTL untouched.
_HIT = """
local stored = redis.call('HGET', KEYS[1], 'window_end')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then
    return {redis.call('HINCRBY', KEYS[1], 'count', 1), stored}
end
redis.call('HSET', KEYS[1], 'window_end', ARGV[1], 'count', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, ARGV[1]}
"""

# KEYS[1] migration lock; ARGV[1] the holder's token
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_V = TypeVar("_V", ClientRecord, Challenge)

# How a value of each field type of the models is read back from Redis.
_DECODERS: dict[object, Callable[[bytes], Any]] = {
    str: bytes.decode,
    bytes: bytes,
    int: int,
    float: float,
    ClientStatus: lambda raw: ClientStatus(raw.decode()),
}
_FIELD_TYPES = {kind: typing.get_type_hints(kind) for kind in (ClientRecord, Challenge)}


def _encode(value: object) -> bytes | str:
    if isinstance(value, bytes):
        return value
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


def _fields(value: ClientRecord | Challenge, *, skip: str = "") -> list[bytes | str]:
    """The dataclass as a flat list of hash fields and values."""
    flat: list[bytes | str] = []
    for field in dataclasses.fields(value):
        if field.name != skip:
            flat += [field.name, _encode(getattr(value, field.name))]
    return flat


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A hash as a script returns it, field, value, field, value..."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _decode(kind: type[_V], stored: Mapping[bytes, bytes], **known: Any) -> _V:
    """A model from a stored hash; absent fields take their defaults.

    Records written before ``recovery_failures`` existed read as 0 failures.
    """
    values = dict(known)
    for name, hint in _FIELD_TYPES[kind].items():
        raw = stored.get(name.encode())
        if raw is not None:
            values[name] = _DECODERS[hint](raw)
    return kind(**values)


def _ttl_ms(end: float, now: float) -> int:
    """Milliseconds from ``now`` until the grace after ``end`` is over."""
    return max(1, math.ceil((end + PURGE_GRACE_SECONDS - now) * 1000))


def _split_prefix(url: str) -> tuple[str, str | None]:
    """``url`` without its ``prefix`` query parameter, and that parameter."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "prefix"]
    if not prefixes:
        return url, None
    if len(prefixes) > 1:
        raise ConfigurationError(
            f"storage URL {redact_url(url)} gives the prefix more than once"
        )

    rest = urllib.parse.urlencode([pair for pair in query if pair[0] != "prefix"])
    return urllib.parse.urlunsplit(parts._replace(query=rest)), prefixes[0]


class RedisStorage:
    """Storage in Redis, chosen by a ``redis://`` or ``rediss://`` URL.

    ``prefix`` starts every key; the URL's ``prefix`` query parameter sets
    it too, and the two must agree when both are given. ``timeout_seconds``
    bounds connecting,
    each command and the wait for one of the ``max_connections`` pooled
    connections; past it a call raises StorageUnavailable. A command is
    never retried, since a retried script might apply twice; pooled
    connections that the server closed are replaced before use.
    """

    blocking = True
    shared = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        timeout_seconds: float = 5.0,
        max_connections: int = 50,
    ) -> None:
        if timeout_seconds <= 0:
            raise ConfigurationError("timeout_seconds must be positive")
        self._label = redact_url(url)
        url, url_prefix = _split_prefix(url)
        if url_prefix is not None:
            if prefix is not None and prefix != url_prefix:
                raise ConfigurationError(
                    f"storage URL {self._label} names the prefix "
                    f"{url_prefix!r}, the prefix option {prefix!r}; give one"
                )
            prefix = url_prefix
        prefix = _DEFAULT_PREFIX if prefix is None else prefix
        self._prefix = prefix
        try:
            pool = redis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=timeout_seconds,
                socket_timeout=timeout_seconds,
                socket_connect_timeout=timeout_seconds,
                socket_keepalive=True,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as error:
            raise ConfigurationError(f"storage URL {self._label}: {error}") from None
        self._redis = redis.Redis(connection_pool=pool)
        self._index = f"{prefix}challenges"
        self._add = self._redis.register_script(_ADD_CLIENT)
        self._replace = self._redis.register_script(_REPLACE_CLIENT)
        self._put = self._redis.register_script(_PUT_CHALLENGE)
        self._take = self._redis.register_script(_TAKE_CHALLENGE)
        self._purge_one = self._redis.register_script(_PURGE_CHALLENGE)
        self._hit = self._redis.register_script(_HIT)
        self._release = self._redis.register_script(_RELEASE_LOCK)

    def __repr__(self) -> str:
        return f"RedisStorage({self._label!r}, prefix={self._prefix!r})"

    @property
    def client(self) -> redis.Redis:
        """The redis-py client, for tools and tests."""
        return self._redis

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as error:
            name = type(error).__name__
            raise StorageUnavailable(
                f"storage {self._label} is unavailable ({name})"
            ) from error

    def _client_key(self, client_id: str) -> str:
        return f"{self._prefix}client:{client_id}"

    def _challenge_key(self, client_id: str) -> str:
        return f"{self._prefix}challenge:{client_id}"

    def _stored_version(self) -> int | None:
        with self._guard():
            stored = self._redis.get(f"{self._prefix}schema_version")
        if stored is None:
            return None
        try:
            return int(stored)
        except ValueError:
            raise SchemaError(
                f"unreadable twofapi schema version at {self._label}: {stored!r}"
            ) from None

    def _newer(self, version: int) -> SchemaTooNew:
        return SchemaTooNew(
            f"the twofapi schema at {self._label} is at version {version}, "
            f"newer than this code knows ({SCHEMA_VERSION}); "
            "upgrade twofapi-middleware"
        )

    def check_schema(self) -> None:
        """Raise SchemaError unless the stored version is SCHEMA_VERSION."""
        version = self._stored_version()
        if version == SCHEMA_VERSION:
            return
        if version is not None and version > SCHEMA_VERSION:
            raise self._newer(version)
        state = "is missing" if version is None else f"is at version {version}"
        raise SchemaError(
            f"the twofapi schema at {self._label} {state}; this code needs "
            f"version {SCHEMA_VERSION}: run `twofapi migrate --storage {self._label}`"
        )

    def migrate(self) -> None:
        """Record SCHEMA_VERSION; stored data already reads as version 1.

        Runs under the migration lock: a concurrent migration waits up to
        MIGRATION_LOCK_SECONDS, then finds the schema current.
        """
        with self._migration_lock():
            version = self._stored_version()
            if version is not None and version > SCHEMA_VERSION:
                raise self._newer(version)
            if version != SCHEMA_VERSION:
                with self._guard():
                    key = f"{self._prefix}schema_version"
                    self._redis.set(key, SCHEMA_VERSION)

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """Hold ``<prefix>migrate_lock``, set to a token only this call
        knows, so that a lock which expired and was taken again by another
        migration is never let go of here."""
        key = f"{self._prefix}migrate_lock"
        token = secrets.token_hex(16)
        deadline = time.monotonic() + MIGRATION_LOCK_SECONDS
        with self._guard():
            while not self._redis.set(key, token, nx=True, px=_MIGRATION_LOCK_TTL_MS):
                if time.monotonic() >= deadline:
                    raise StorageUnavailable(
                        f"storage {self._label}: another migration held the "
                        f"lock for over {MIGRATION_LOCK_SECONDS} seconds"
                    )
                time.sleep(_MIGRATION_LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            with self._guard():
                self._release(keys=[key], args=[token])

    def close(self) -> None:
        """Close the pooled connections."""
        self._redis.close()
        self._redis.connection_pool.disconnect()

    def get_client(self, client_id: str) -> ClientRecord | None:
        with self._guard():
            stored = self._redis.hgetall(self._client_key(client_id))
        if not stored:
            return None
        # Without decode_responses, the client answers bytes.
        return _decode(ClientRecord, cast(dict[bytes, bytes], stored))

    def add_client(self, record: ClientRecord) -> ClientRecord:
        key = self._client_key(record.client_id)
        with self._guard():
            stored = self._add(keys=[key], args=_fields(record))
        return record if stored is None else _decode(ClientRecord, _pairs(stored))

    def replace_client(self, record: ClientRecord, expected_revision: int) -> bool:
        key = self._client_key(record.client_id)
        args = [str(expected_revision), *_fields(record)]
        with self._guard():
            return bool(self._replace(keys=[key], args=args))

    def put_challenge(self, challenge: Challenge, now: float) -> None:
        keys = [self._challenge_key(challenge.client_id), self._index]
        args = [
            challenge.client_id,
            repr(challenge.expires_at),
            _ttl_ms(challenge.expires_at, now),
            *_fields(challenge, skip="client_id"),
        ]
        with self._guard():
            self._put(keys=keys, args=args)

    def take_challenge(self, challenge_id: str, client_id: str) -> Challenge | None:
        keys = [self._challenge_key(client_id), self._index]
        with self._guard():
            taken = self._take(keys=keys, args=[challenge_id, client_id])
        if taken is None:
            return None
        return _decode(Challenge, _pairs(taken), client_id=client_id)

    def withdraw_challenge(self, client_id: str) -> None:
        with self._guard(), self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._challenge_key(client_id))
            pipe.zrem(self._index, client_id)
            pipe.execute()

    def hit(self, key: str, window_seconds: int, now: float) -> tuple[int, float]:
        end = float((math.floor(now / window_seconds) + 1) * window_seconds)
        keys = [f"{self._prefix}counter:{key}"]
        with self._guard():
            answer = self._hit(keys=keys, args=[repr(end), _ttl_ms(end, now)])
        count, window_end = cast(list[Any], answer)
        return int(count), float(window_end)

    def purge(self, now: float) -> None:
        """Remove challenges expired over PURGE_GRACE_SECONDS ago.

        Counters need no purge: their TTL removes them.
        """
        horizon = repr(now - PURGE_GRACE_SECONDS)
        with self._guard():
            while True:
                found = self._redis.zrangebyscore(
                    self._index, "-inf", f"({horizon}", start=0, num=_PURGE_BATCH
                )
                stale = cast(list[bytes], found)
                with self._redis.pipeline(transaction=False) as pipe:
                    for member in stale:
                        client_id = member.decode()
                        keys = [self._challenge_key(client_id), self._index]
                        self._purge_one(
                            keys=keys, args=[client_id, horizon], client=pipe
                        )
                    removed = sum(pipe.execute())
                if len(stale) < _PURGE_BATCH or not removed:
                    return

    def challenge_count(self) -> int:
        with self._guard():
            return int(self._redis.zcard(self._index))
