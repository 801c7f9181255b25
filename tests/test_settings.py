"""Settings: keyword arguments, TWOFAPI_* variables, and start-up refusals."""

from __future__ import annotations

import logging

import pytest

from twofapi_middleware import ConfigurationError, Settings, TwoFApi
from twofapi_middleware.tokens import generate_private_key_pem

SECRET = "s" * 32


def test_environment_is_read_and_keywords_win(tmp_path):
    key_file = tmp_path / "key.pem"
    key_file.write_text(generate_private_key_pem())
    env = {
        "TWOFAPI_ENV": "production",
        "TWOFAPI_SIGNING_KEY_FILE": str(key_file),
        "TWOFAPI_ADMIN_SECRET": SECRET,
        "TWOFAPI_AUDIENCES": "api, admin",
        "TWOFAPI_TOKEN_LEEWAY_SECONDS": "30",
        "TWOFAPI_REQUIRE_CHANNEL_BINDING": "true",
        "TWOFAPI_EXCLUDE_PATHS": "/a,/b",
        "TWOFAPI_RATE_LIMIT_PER_ADDRESS": "0",
        "TWOFAPI_CHECK_CREDENTIAL": "hmac:compare_digest",
    }
    settings = Settings.from_env(env, issuer="me")
    assert settings.production and settings.issuer == "me"
    assert settings.audiences == ("api", "admin")
    assert settings.token_leeway_seconds == 30
    assert settings.require_channel_binding is True
    assert settings.exclude_paths == ("/a", "/b")
    assert settings.rate_limit_per_address == 0
    assert callable(settings.check_credential)
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    "env",
    [
        {"TWOFAPI_ADMIN_SECRET": "short"},
        {"TWOFAPI_TOKEN_LEEWAY_SECONDS": "61"},
        {"TWOFAPI_TOKEN_LEEWAY_SECONDS": "ten"},
        {"TWOFAPI_ENV": "staging"},
        {"TWOFAPI_SIGNING_KEY": "x", "TWOFAPI_SIGNING_KEY_FILE": "/x"},
        {"TWOFAPI_REQUIRE_CHANNEL_BINDING": "maybe"},
        {"TWOFAPI_RATE_LIMIT_PER_CLIENT": "-1"},
        {"TWOFAPI_CHECK_CREDENTIAL": "no.such.module:f"},
    ],
)
def test_bad_configuration_is_an_error(env):
    with pytest.raises(ConfigurationError):
        Settings.from_env(env)


def test_development_without_key_warns_and_uses_an_ephemeral_key(caplog):
    with caplog.at_level(logging.WARNING):
        service = TwoFApi(Settings())
    assert service.codec.signing_key.ephemeral
    assert "ephemeral" in caplog.text


@pytest.mark.parametrize(
    "changes",
    [{}, {"accept_any_proof": True}, {"signing_key": "not a pem"}],
)
def test_production_refuses_to_start_unsafely(changes):
    with pytest.raises(ConfigurationError):
        TwoFApi(Settings(env="production", **changes))


def test_production_refuses_accept_any_proof_even_with_a_key():
    settings = Settings(
        env="production", signing_key=generate_private_key_pem(), accept_any_proof=True
    )
    with pytest.raises(ConfigurationError):
        TwoFApi(settings)


def test_production_warns_without_a_first_factor(caplog):
    settings = Settings(env="production", signing_key=generate_private_key_pem())
    with caplog.at_level(logging.WARNING):
        TwoFApi(settings)
    assert "check_credential" in caplog.text


def test_a_signing_key_file_others_can_read_is_warned_about(tmp_path, caplog):
    key_file = tmp_path / "key.pem"
    key_file.write_text(generate_private_key_pem())
    key_file.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        Settings(signing_key_file=str(key_file)).signing_key_pem()
    assert "chmod 600" in caplog.text
    caplog.clear()
    key_file.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        Settings(signing_key_file=str(key_file)).signing_key_pem()
    assert "chmod" not in caplog.text
