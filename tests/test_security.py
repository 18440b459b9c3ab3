"""SASL and TLS settings: validated when given, passed to every client."""

from __future__ import annotations

import ssl
import subprocess

import pytest

from streams.app import broker_credentials, faust_config
from streams.kafka.clients import client_kwargs
from streams.settings import SettingsError, load_settings


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory):
    """A self-signed certificate and key (openssl), for mutual TLS."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=recstream-test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def test_sasl_ssl_reaches_the_tools_and_faust(cert_files):
    cert, key = cert_files
    settings = load_settings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc", sasl_password="s3cret",
        ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key,
    )
    kwargs = client_kwargs(settings)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("svc", "s3cret")
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    credentials = broker_credentials(settings)
    assert credentials.username == "svc" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert faust_config(settings)["broker_credentials"] is credentials or faust_config(settings)["broker_credentials"].username == "svc"
    # the password is a secret: it never shows in the settings' repr
    assert "s3cret" not in repr(settings)


def test_plaintext_passes_nothing():
    kwargs = client_kwargs(load_settings())
    assert set(kwargs) == {"bootstrap_servers"}
    assert broker_credentials(load_settings()) is None


@pytest.mark.parametrize(
    "given, message",
    [
        ({"security_protocol": "SASL_PLAINTEXT"}, "needs sasl_username"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "svc"}, "needs sasl_password"),
        ({"sasl_username": "svc", "sasl_password": "x"}, "SASL credentials are set but security_protocol is PLAINTEXT"),
        ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "is not a file"),
        ({"ssl_cafile": "/etc/hostname"}, "set but security_protocol is PLAINTEXT"),
    ],
)
def test_invalid_security_settings_are_refused(given, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(**given)


def test_a_key_without_its_certificate_is_refused(cert_files):
    _, key = cert_files
    with pytest.raises(SettingsError, match="ssl_keyfile needs ssl_certfile"):
        load_settings(security_protocol="SSL", ssl_keyfile=key)
