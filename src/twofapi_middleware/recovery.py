"""Recovery phrases: BIP-39 English mnemonics kept only as Argon2id hashes.

Argon2 is memory-hard on purpose, so a flood of enrollments or recoveries
could exhaust the server's memory. Every hash and check runs through
:class:`Argon2Gate`: a few at once, a short queue, and a 429 beyond it.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import argon2
from mnemonic import Mnemonic

from .constants import RECOVERY_WORD_COUNTS, RECOVERY_WORDS_ISSUED
from .errors import RateLimited, ValidationFailed

_ENGLISH = Mnemonic("english")
_WORDS = frozenset(_ENGLISH.wordlist)
_STRENGTH_BITS = {12: 128, 15: 160, 18: 192, 21: 224, 24: 256}


def new_phrase() -> list[str]:
    """A fresh 12-word phrase with a valid checksum."""
    words = _ENGLISH.generate(strength=_STRENGTH_BITS[RECOVERY_WORDS_ISSUED])
    return words.split(" ")


def normalize_phrase(value: object, field: str = "recoveryWords") -> str:
    """Validate a phrase from a request and return its canonical form.

    Each word is NFKD-normalised and lowercased; the count, the words and
    the checksum must be those of a BIP-39 English mnemonic.
    """
    if not isinstance(value, list) or len(value) not in RECOVERY_WORD_COUNTS:
        raise ValidationFailed(field, "must be an array of 12, 18 or 24 words")
    words = []
    for word in value:
        if not isinstance(word, str):
            raise ValidationFailed(field, "must contain only strings")
        normalized = unicodedata.normalize("NFKD", word).lower()
        if normalized not in _WORDS:
            raise ValidationFailed(field, "contains a word outside the list")
        words.append(normalized)
    phrase = " ".join(words)
    if not _ENGLISH.check(phrase):
        raise ValidationFailed(field, "has a bad checksum")
    return phrase


def join_phrase(words: Sequence[str]) -> str:
    return " ".join(words)


class Argon2Gate:
    """Argon2id hashing and checking under a concurrency cap."""

    def __init__(
        self,
        *,
        memory_kib: int,
        time_cost: int,
        parallelism: int,
        concurrency: int,
        queue: int,
    ) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._slots = threading.BoundedSemaphore(concurrency)
        self._admitted = 0
        self._limit = concurrency + queue
        self._lock = threading.Lock()
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    @contextmanager
    def _slot(self) -> Iterator[None]:
        with self._lock:
            if self._admitted >= self._limit:
                raise RateLimited(1)
            self._admitted += 1
        try:
            with self._slots:
                yield
        finally:
            with self._lock:
                self._admitted -= 1

    def hash(self, phrase: str) -> str:
        with self._slot():
            return self._hasher.hash(phrase)

    def verify(self, stored_hash: str | None, phrase: str) -> bool:
        """Check ``phrase``; with no stored hash, burn the same work and fail."""
        known = stored_hash is not None
        matched: bool
        with self._slot():
            if stored_hash is None:
                stored_hash = self._dummy()
            try:
                matched = self._hasher.verify(stored_hash, phrase)
            except (
                argon2.exceptions.VerificationError,
                argon2.exceptions.InvalidHashError,
            ):
                matched = False
        return matched and known

    def _dummy(self) -> str:
        # Made once, inside a slot: a flood of unknown identifiers must not
        # run a burst of uncapped hashes before the first one is ready.
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(" ".join(new_phrase()))
            return self._dummy_hash
