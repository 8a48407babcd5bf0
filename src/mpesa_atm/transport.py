"""The way to a partner, for `fuzz` and `verify` alike: curl's --cacert, --cert, --key, --insecure and
-H, a frozen `Network` built from them, the clients configured by it (a requests Session for the
fuzzer, httpx options for the verifier's relay and proxy), its curl options for reproducers, and TLS
failures worded in one line.

HTTPS_PROXY (and HTTP_PROXY, NO_PROXY) are honoured: both clients keep trust_env on. requests and httpx
are imported when a client is made, not with the parser.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import ssl
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mpesa_atm.errors import ConfigError, UsageError
from mpesa_atm.masking import is_secret_header

if TYPE_CHECKING:
    import requests

__all__ = [
    "Network",
    "add_network_options",
    "header_variable",
    "load_cert_chain",
    "merged_headers",
    "refused_outside_envelope",
    "tls_problem",
]

# A header's name is an RFC 9110 token.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value or not _TOKEN.match(name):
        raise ValueError(f"expected 'Name: value', not {text!r}")
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"a header's value is one line: {text!r}")
    return name, value


def _header_option(text: str) -> list[tuple[str, str]]:
    """-H 'Name: value', or -H @FILE: one header a line (curl's syntax, which keeps a secret out of the
    process list)."""
    try:
        if text.startswith("@"):
            try:
                lines = Path(text[1:]).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read {text[1:]}: {getattr(exc, 'strerror', None) or exc}") from None
            return [_header(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return [_header(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """Adds curl's --cacert, --cert, --key, -k/--insecure and -H/--header to `parser`, in a group."""
    group = parser.add_argument_group(
        "network", "how to reach the partner, with curl's names; HTTPS_PROXY is honoured"
    )
    group.add_argument(
        "--cacert", metavar="FILE", help="trust the CA certificates in this PEM file (instead of the default)"
    )
    group.add_argument(
        "--cert", metavar="FILE", help="client certificate (PEM) for mutual TLS; with the key unless --key"
    )
    group.add_argument(
        "--key", metavar="FILE", help="the client certificate's private key (PEM, no passphrase)"
    )
    group.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify the partner's certificate (tests only)"
    )
    group.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        type=_header_option,
        default=[],
        metavar="'NAME: VALUE'",
        help="send this header with every request (a gateway's key); repeatable; @FILE: one a line",
    )


def _readable(option: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{option} {path}: {exc.strerror or exc}") from None


class _Encrypted(Exception):
    pass


def _no_passphrase() -> str:
    # Without a callback OpenSSL would ask for the passphrase on the terminal.
    raise _Encrypted


def load_cert_chain(
    context: ssl.SSLContext, cert: str, key: str | None, what: str, key_option: str = "--key"
) -> None:
    """Loads a certificate and its key (in `cert` when `key` is None) into `context`; a ConfigError
    that starts with `what` (the options that gave them) when they cannot be used."""
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except _Encrypted:
        raise ConfigError(f"{what}: the key is encrypted: give one without a passphrase") from None
    except ssl.SSLError as exc:
        hint = "" if key else f" (without {key_option}, the key must be in the same file)"
        raise ConfigError(f"{what}: not a certificate and its key{hint}: {_words(exc)}") from None
    except OSError as exc:
        raise ConfigError(f"{what}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class Network:
    """How to reach a partner: the CA file to trust, a client certificate and its key, whether to skip
    verification, and headers for every request. Files are checked (read and loaded) when it is made:
    a missing or unusable one is a ConfigError naming its option."""

    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.key is not None and self.cert is None:
            raise UsageError("needs the certificate it belongs to: give --cert too", argument="key")
        for name, value in self.headers:
            _header(f"{name}: {value}")  # a library caller's headers, checked as the flag's
        if self.cacert is not None:
            _readable("--cacert", self.cacert)
            try:
                ssl.create_default_context().load_verify_locations(cafile=self.cacert)
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"--cacert {self.cacert}: no PEM certificate in it ({_words(exc)})"
                ) from None
        if self.cert is not None:
            _readable("--cert", self.cert)
            if self.key is not None:
                _readable("--key", self.key)
            self._load_client_certificate(ssl.create_default_context())

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Network:
        """The network the flags of `add_network_options` describe."""
        return cls(
            cacert=args.cacert,
            cert=args.cert,
            key=args.key,
            insecure=args.insecure,
            headers=tuple(header for given in args.headers for header in given),
        )

    def _load_client_certificate(self, context: ssl.SSLContext) -> None:
        assert self.cert is not None
        what = f"--cert {self.cert}" + (f" and --key {self.key}" if self.key else "")
        load_cert_chain(context, self.cert, self.key, what)

    @property
    def tls_options(self) -> bool:
        return self.cacert is not None or self.cert is not None or self.insecure

    # Clients ------------------------------------------------------------------------------------------

    def session(self) -> requests.Session:
        """A requests Session that verifies as asked, presents the client certificate and sends the
        headers; proxies from the environment. An explicit --cacert or --insecure wins over
        REQUESTS_CA_BUNDLE, as curl's flags win over its variables."""
        import requests

        pinned = self.cacert is not None or self.insecure

        class Session(requests.Session):
            # requests reads the environment's proxies and CA bundles again for every request (0.8 ms
            # of a fuzz campaign's 2.5 ms a request, measured): the environment of one session's
            # life is read once per scheme and host.
            _merged: dict[tuple[Any, ...], dict[str, Any]]

            def merge_environment_settings(
                self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
            ) -> dict[str, Any]:
                parts = urlsplit(str(url))
                key = (parts.scheme, parts.netloc, repr(proxies), stream, repr(verify), repr(cert))
                cache = self.__dict__.setdefault("_merged", {})
                if key not in cache:
                    merged: dict[str, Any] = super().merge_environment_settings(
                        url, proxies, stream, verify, cert
                    )
                    if pinned and verify is None:
                        merged["verify"] = self.verify
                    cache[key] = merged
                kept = cache[key]
                return {**kept, "proxies": dict(kept.get("proxies") or {})}

        session = Session()
        self.configure(session)
        return session

    def configure(self, session: requests.Session) -> None:
        """Applies the network to a requests Session made elsewhere (an in-process app's)."""
        if self.insecure:
            session.verify = False
            # Asked for once on the command line: urllib3 would warn at every request.
            from urllib3.exceptions import InsecureRequestWarning

            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        elif self.cacert is not None:
            session.verify = self.cacert
        if self.cert is not None:
            session.cert = (self.cert, self.key) if self.key else self.cert
        session.headers.update(dict(self.headers))

    def ssl_context(self) -> ssl.SSLContext | bool:
        """httpx's `verify`: True (its defaults, SSL_CERT_FILE honoured) unless a TLS option is given."""
        if not self.tls_options:
            return True
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.cacert is not None:
            context = ssl.create_default_context(cafile=self.cacert)
        else:
            import certifi  # httpx's own default trust

            context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())
        if self.cert is not None:
            self._load_client_certificate(context)
        return context

    def closed_hint(self, url: str) -> str:
        """What a connection closed without an answer may mean over HTTPS: a server that wants a client
        certificate, or refuses the one given (asyncio's TLS closes the connection without a word)."""
        if not url.startswith("https://"):
            return ""
        if self.cert is None:
            return (
                "; a server that wants a client certificate closes the connection so: "
                "give one with --cert FILE and --key FILE"
            )
        return (
            "; a server that refuses the client certificate closes the connection so: "
            f"check that --cert {self.cert} is signed by a CA it trusts"
        )

    # Reproducers --------------------------------------------------------------------------------------

    def curl_options(self) -> list[str]:
        """The same network as curl arguments, shell-quoted: files by absolute path, a secret header's
        value read from a shell variable named after it (`-H 'X-Api-Key: '"$X_API_KEY"`)."""
        options: list[str] = []
        if self.insecure:
            options.append("--insecure")
        for flag, path in (("--cacert", self.cacert), ("--cert", self.cert), ("--key", self.key)):
            if path is not None:
                options += [flag, shlex.quote(os.path.abspath(path))]
        for name, value in self.headers:
            if is_secret_header(name):
                options += ["-H", shlex.quote(f"{name}: ") + f'"${header_variable(name)}"']
            else:
                options += ["-H", shlex.quote(f"{name}: {value}")]
        return options

    def secret_variables(self) -> list[str]:
        """The shell variables the reproducers read secret headers from."""
        return [header_variable(name) for name, _ in self.headers if is_secret_header(name)]


def header_variable(name: str) -> str:
    """The shell variable a reproducer reads a secret header from: X-Api-Key -> X_API_KEY."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _words(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or str(exc)
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(text))


# What the ssl module says, and what it means for the partner and the flags.
_TLS_MEANINGS: Sequence[tuple[str, str]] = (
    (
        "CERTIFICATE_VERIFY_FAILED",
        "its certificate is not trusted ({detail}): give its CA with --cacert FILE, or --insecure",
    ),
    ("CERTIFICATE_REQUIRED", "it wants a client certificate: give one with --cert FILE and --key FILE"),
    ("ALERT_UNKNOWN_CA", "it refused the client certificate (signed by a CA it does not trust)"),
    ("ALERT_BAD_CERTIFICATE", "it refused the client certificate"),
    ("ALERT_CERTIFICATE_UNKNOWN", "it refused the client certificate"),
    ("ALERT_HANDSHAKE_FAILURE", "the TLS handshake failed (no protocol or cipher in common)"),
    ("WRONG_VERSION_NUMBER", "it does not speak TLS there: an http:// URL?"),
    ("RECORD_LAYER_FAILURE", "it does not speak TLS there: an http:// URL?"),
)
_VERIFY_DETAIL = re.compile(r"certificate verify failed: ([^(')\]]+)")


def tls_problem(error: BaseException | str) -> str | None:
    """What went wrong in TLS, in a few words that name the flag to fix it, or None when `error` (an
    exception, or its text) is not a TLS failure. requests and httpx nest the ssl module's error in
    their own: its text is read, causes included."""
    text = str(error)
    cause = error.__cause__ or error.__context__ if isinstance(error, BaseException) else None
    while cause is not None:
        text += " " + str(cause)
        cause = cause.__cause__ or cause.__context__
    for marker, meaning in _TLS_MEANINGS:
        if marker in text:
            found = _VERIFY_DETAIL.search(text)
            detail = found.group(1).strip() if found else "certificate verify failed"
            return "TLS: " + meaning.format(detail=detail)
    return None


def refused_outside_envelope(status: int | None, body: bytes) -> bool:
    """A 401 or 403 that is not the API's envelope: a gateway, or another layer in front of the API,
    refused the request (the API itself answers in its envelope)."""
    if status not in (401, 403):
        return False
    import json

    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return True
    return not (isinstance(parsed, dict) and "output_ResponseCode" in parsed)


def merged_headers(*groups: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers from several sources, the later winning (names compared without case)."""
    merged: dict[str, tuple[str, str]] = {}
    for group in groups:
        for name, value in group:
            merged[name.lower()] = (name, value)
    return dict(merged.values())
