"""Fixtures shared by the test suites (see ``helpers.py`` for the plumbing).

``api`` is the demo app behind the ASGI middleware and, in a second run of
each test, behind the WSGI one; ``make_api(**settings)`` builds more of them
with other settings, on the same adapter. Both use ``fast_settings`` and the
test's ``clock``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helpers import KINDS, Api, build_api
from twofapi_middleware.testing import FakeClock, fast_settings


@pytest.fixture(params=KINDS)
def api_kind(request: pytest.FixtureRequest) -> str:
    """Which adapter: "asgi" or "wsgi"."""
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_api(api_kind: str, clock: FakeClock) -> Iterator[Callable[..., Api]]:
    """Build the demo app behind this test's adapter with settings overrides."""
    built: list[Api] = []

    def make(**overrides: Any) -> Api:
        overrides.setdefault("clock", clock)
        api = build_api(api_kind, fast_settings(**overrides))
        built.append(api)
        return api

    yield make
    for api in built:
        api.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """The demo app behind one adapter (parametrized: asgi, wsgi)."""
    return make_api()
