"""TLS and SASL for every Kafka client recstream opens (Faust's and the tools')."""

from __future__ import annotations

import ssl

from streams.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for ``SSL``/``SASL_SSL`` (``None`` otherwise): the CA
    bundle when given (else the system's), and a client certificate for
    mutual TLS when ``ssl_certfile``/``ssl_keyfile`` are set."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    if settings.ssl_certfile is not None:
        context.load_cert_chain(str(settings.ssl_certfile), str(settings.ssl_keyfile) if settings.ssl_keyfile else None)
    return context


def api_server_ssl(settings: Settings) -> ssl.SSLContext | None:
    """TLS for the worker's HTTP server (API, metrics, health) when
    ``api_ssl_certfile``/``api_ssl_keyfile`` are set, else ``None`` (HTTP)."""
    if settings.api_ssl_certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(settings.api_ssl_certfile), str(settings.api_ssl_keyfile) if settings.api_ssl_keyfile else None)
    return context


def api_client_ssl(settings: Settings) -> ssl.SSLContext:
    """TLS for forwarding API requests to other workers: the same CA bundle
    as Kafka's (``ssl_cafile``) when given, else the system's."""
    return ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
