"""Serving over TLS, for `serve` and `proxy` alike: the flags of the settings tls_cert, tls_key and
tls_client_ca in one group, their files loaded once before anything listens (a file that cannot be
used is one line), and uvicorn's ssl_* options from them (a client certificate required under
tls_client_ca: mutual TLS)."""

from __future__ import annotations

import argparse
import ssl
from typing import Any

from mpesa_atm.errors import ConfigError
from mpesa_atm.settings import Settings, add_flags
from mpesa_atm.transport import load_cert_chain

__all__ = ["TLS_SETTINGS", "add_tls_flags", "check_tls", "tls_options", "url"]

# The settings a server takes for HTTPS (settings.py declares them); `serve` hands them on to its role
# processes by their variables.
TLS_SETTINGS = ("tls_cert", "tls_key", "tls_client_ca")


def add_tls_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """Adds --tls-cert, --tls-key and --tls-client-ca to `parser`, in a group saying it serves `what`
    over TLS."""
    group = parser.add_argument_group(
        "HTTPS", f"serve {what} over TLS (also tls_cert, tls_key, tls_client_ca in the config)"
    )
    add_flags(group, *TLS_SETTINGS)


def check_tls(settings: Settings) -> None:
    """Loads the TLS files once, before anything listens: a file that cannot be used is a ConfigError
    of one line (uvicorn would fail later, in a worker, with a traceback)."""
    if settings.tls_cert is None:
        return
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    what = f"TLS certificate {settings.tls_cert}" + (
        f" and key {settings.tls_key}" if settings.tls_key else ""
    )
    load_cert_chain(context, settings.tls_cert, settings.tls_key, what, key_option="--tls-key")
    if settings.tls_client_ca is not None:
        try:
            context.load_verify_locations(cafile=settings.tls_client_ca)
        except OSError as exc:
            raise ConfigError(f"TLS client CA {settings.tls_client_ca}: {exc.strerror or exc}") from None
        except ssl.SSLError as exc:
            raise ConfigError(
                f"TLS client CA {settings.tls_client_ca}: no PEM certificate in it ({exc})"
            ) from None


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's ssl_* options; with a client CA a client certificate is required (mutual TLS), so a
    client without one signed by that CA is refused at the handshake."""
    if settings.tls_cert is None:
        return {}
    return {
        "ssl_certfile": settings.tls_cert,
        "ssl_keyfile": settings.tls_key,
        "ssl_ca_certs": settings.tls_client_ca,
        "ssl_cert_reqs": ssl.CERT_REQUIRED if settings.tls_client_ca else ssl.CERT_NONE,
    }


def url(host: str, port: int, tls: bool = False) -> str:
    """The base URL a server listening on host:port is reached at (an IPv6 address in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"
