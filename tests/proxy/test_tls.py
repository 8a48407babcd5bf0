"""`mpesa-atm proxy` on real networks, both ways: its own port over TLS and mutual TLS (--tls-cert,
--tls-key, --tls-client-ca, as serve's), and an upstream over HTTPS with a private CA (--cacert) that
may want a client certificate (--cert, --key); the proxy's 502 when the upstream's TLS fails, and the
one line (exit 2) for TLS files the proxy cannot serve with."""

from __future__ import annotations

import re
import signal
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from mpesa_atm.cli import main
from mpesa_atm.mocks import create_app
from mpesa_atm.proxy import command
from mpesa_atm.proxy.factory import create_proxy
from mpesa_atm.proxy.judge import Judge
from mpesa_atm.settings import Settings
from mpesa_atm.transport import Network
from tests.fixtures.mocks import DOCUMENT_GENERATION, Running
from tests.fixtures.servers import wait_for
from tests.fixtures.tls import Certificates
from tests.proxy.test_command import Proxy

_BANNER = re.compile(r"^mpesa-atm \S+: proxy of the (?:iPG|bank) on (https?://\S+) ", re.MULTILINE)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the environment of the run: the proxy processes inherit it."""
    for name in ("UPSTREAM", "CONFIG", "TLS_CERT", "TLS_KEY", "TLS_CLIENT_CA", "CLIENT_TIMEOUT"):
        monkeypatch.delenv(f"MPESA_ATM_{name}", raising=False)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)


class TlsProxy(Proxy):
    """A `mpesa-atm proxy` process whose banner may say https://."""

    def ready(self) -> TlsProxy:
        def banner() -> bool:
            assert self.process.poll() is None, self.output()
            found = _BANNER.search(self.output())
            self.url = found.group(1) if found else ""
            return bool(found)

        wait_for(banner, "the proxy's banner", timeout=30)
        return self


@pytest.fixture
def tls_proxies(tmp_path: Path) -> Iterator[Callable[..., TlsProxy]]:
    """Starts `mpesa-atm proxy bank --upstream URL ARGS...` processes (not yet waited for: start
    several, then wait), each with a folder of its own; killed at the end if still running."""
    started: list[TlsProxy] = []

    def start(upstream: str, *args: str) -> TlsProxy:
        folder = tmp_path / f"proxy-{len(started)}"
        folder.mkdir()
        started.append(TlsProxy(folder, "bank", upstream, *args))
        return started[-1]

    yield start
    for proxy in started:
        if proxy.process.poll() is None:
            proxy.process.kill()
            proxy.process.wait()


def _served(certs: Certificates) -> list[str]:
    """The proxy's own port over TLS, with the server certificate of the test's CA."""
    return ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]


@pytest.mark.network
def test_the_proxy_over_tls_says_https_and_brings_an_https_upstreams_answer_with_cacert(
    settings: Settings,
    serve_tls_app: Callable[..., str],
    tls_proxies: Callable[..., TlsProxy],
    certs: Certificates,
) -> None:
    upstream = serve_tls_app(create_app("bank", settings))
    proxy = tls_proxies(upstream, "--cacert", str(certs.ca), *_served(certs)).ready()
    assert proxy.url.startswith("https://127.0.0.1:"), proxy.output()

    answer = httpx.post(
        f"{proxy.url}/token-generation", json=DOCUMENT_GENERATION, verify=certs.context(), timeout=10
    )

    assert answer.status_code == 200 and answer.json()["output_ResponseCode"] == "0", answer.text
    assert "x-mpesa-atm-violations" not in answer.headers
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # the default CAs
        httpx.post(f"{proxy.url}/token-generation", json=DOCUMENT_GENERATION, timeout=10)
    wait_for(lambda: "bank POST /token-generation 200 0 " in proxy.output(), "the exchange's line")
    assert proxy.stop(signal.SIGINT) == 0, proxy.output()
    assert "PASSED" in proxy.output().splitlines()[-1]
    assert f"journal {proxy.url}/_harness/journal" in proxy.output()


@pytest.mark.network
def test_mutual_tls_on_both_sides_refuses_a_client_without_a_certificate_of_the_ca_at_the_handshake(
    settings: Settings,
    serve_tls_app: Callable[..., str],
    tls_proxies: Callable[..., TlsProxy],
    certs: Certificates,
) -> None:
    # The upstream wants a client certificate too: the proxy presents its own with --cert and --key.
    upstream = serve_tls_app(create_app("bank", settings), client_ca=True)
    mine = ["--cert", str(certs.client_cert), "--key", str(certs.client_key)]
    proxy = tls_proxies(
        upstream, "--cacert", str(certs.ca), *mine, *_served(certs), "--tls-client-ca", str(certs.ca)
    ).ready()
    generation = f"{proxy.url}/token-generation"

    # Under TLS 1.3 the proxy refuses the certificate after the client's side of the handshake is
    # done: the client sees the connection closed without an answer. Under TLS 1.2, in the handshake.
    stranger = certs.context()
    stranger.load_cert_chain(certs.stranger_cert, certs.stranger_key)
    old_client = certs.context()
    old_client.maximum_version = ssl.TLSVersion.TLSv1_2
    for context, refused in (
        (certs.context(), httpx.RemoteProtocolError),
        (stranger, httpx.RemoteProtocolError),
        (old_client, httpx.ConnectError),
    ):
        with pytest.raises(refused):
            httpx.post(generation, json=DOCUMENT_GENERATION, verify=context, timeout=10)
    answer = httpx.post(generation, json=DOCUMENT_GENERATION, verify=certs.context(client=True), timeout=10)

    assert answer.status_code == 200 and answer.json()["output_ResponseCode"] == "0", answer.text
    wait_for(lambda: "bank POST /token-generation 200 0 " in proxy.output(), "the exchange's line")
    assert proxy.stop(signal.SIGTERM) == 0, proxy.output()
    assert "1 exchange in" in proxy.output().splitlines()[-1]  # the refused clients never got in


@pytest.fixture
def proxied(
    settings: Settings, running: Running, judges: dict[str, Judge], tmp_path: Path
) -> Callable[..., tuple[TestClient, list[str]]]:
    """A proxy of the bank in this process, in front of a real upstream reached over the network as
    `network` says (what --cacert, --cert, --key and -k make); its client and the lines it printed."""

    def start(upstream: str, network: Network) -> tuple[TestClient, list[str]]:
        lines: list[str] = []
        app = create_proxy(
            "bank",
            settings.replace(db_path=str(tmp_path / "proxy.sqlite3")),
            upstream=upstream,
            network=network,
            judge=judges["bank"],
            out=lines.append,
        )
        return running.client(running.start(app), base_url="http://proxy.test"), lines

    return start


# What transport.py says of each TLS failure, with the flag that fixes it.
_NOT_TRUSTED = (
    "TLS: its certificate is not trusted (unable to get local issuer certificate): give its CA with"
    " --cacert FILE, or --insecure"
)
_WANTS_ONE = (
    "a server that wants a client certificate closes the connection so: give one with --cert FILE and"
    " --key FILE"
)
_REFUSES_OURS = (
    "a server that refuses the client certificate closes the connection so: check that --cert {cert} is"
    " signed by a CA it trusts"
)


@pytest.mark.network
@pytest.mark.parametrize(
    ("upstream_wants", "network", "code", "said"),
    [
        ("nothing", {}, "-7", _NOT_TRUSTED),
        ("nothing", {"cacert": "other_ca"}, "-7", _NOT_TRUSTED),
        # Under TLS 1.3 the upstream refuses a client certificate after the handshake the proxy saw
        # succeed: the request may have gone, so the outcome is unknown (-6), as after a reset.
        ("a certificate", {"cacert": "ca"}, "-6", _WANTS_ONE),
        (
            "a certificate",
            {"cacert": "ca", "cert": "stranger_cert", "key": "stranger_key"},
            "-6",
            _REFUSES_OURS,
        ),
    ],
    ids=["no-cacert", "another-ca", "no-client-certificate", "a-strangers-certificate"],
)
def test_an_upstream_tls_failure_is_answered_502_in_the_envelope_naming_the_flag_that_fixes_it(
    settings: Settings,
    serve_tls_app: Callable[..., str],
    proxied: Callable[..., tuple[TestClient, list[str]]],
    certs: Certificates,
    upstream_wants: str,
    network: dict[str, str],
    code: str,
    said: str,
) -> None:
    upstream = serve_tls_app(create_app("bank", settings), client_ca=upstream_wants == "a certificate")
    files = {option: str(getattr(certs, name)) for option, name in network.items()}
    client, lines = proxied(upstream, Network(**files))

    answer = client.post("/token-generation", json=DOCUMENT_GENERATION)

    assert answer.status_code == 502, answer.text
    envelope = answer.json()
    assert envelope["output_ResponseCode"] == code, envelope
    assert envelope["output_ResponseDesc"].endswith(said.format(**files)), envelope
    assert answer.headers["x-mpesa-atm-violations"] == "not_a_server_error"
    assert lines[-1].endswith("VIOLATIONS not_a_server_error (upstream, failure)"), lines


@pytest.mark.network
@pytest.mark.parametrize(
    ("upstream_wants", "network"),
    [
        ("nothing", {"cacert": "ca"}),
        ("nothing", {"insecure": True}),
        ("a certificate", {"cacert": "ca", "cert": "client_cert", "key": "client_key"}),
    ],
    ids=["cacert", "insecure", "client-certificate"],
)
def test_an_https_upstream_reached_as_the_network_options_say_gives_its_answer(
    settings: Settings,
    serve_tls_app: Callable[..., str],
    proxied: Callable[..., tuple[TestClient, list[str]]],
    certs: Certificates,
    upstream_wants: str,
    network: dict[str, Any],
) -> None:
    upstream = serve_tls_app(create_app("bank", settings), client_ca=upstream_wants == "a certificate")
    given = {k: v if isinstance(v, bool) else str(getattr(certs, v)) for k, v in network.items()}
    client, lines = proxied(upstream, Network(**given))

    answer = client.post("/token-generation", json=DOCUMENT_GENERATION)

    assert answer.status_code == 200 and answer.json()["output_ResponseCode"] == "0", answer.text
    assert "x-mpesa-atm-violations" not in answer.headers
    assert "bank POST /token-generation 200 0 " in lines[-1] and "VIOLATIONS" not in lines[-1], lines


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", "missing.pem"], "TLS certificate missing.pem: No such file or directory"),
        (["--tls-cert", "{ca}"], "not a certificate and its key (without --tls-key"),
        (["--tls-cert", "{cert}", "--tls-key", "{other_key}"], "not a certificate and its key"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-ca", "{key}"], "TLS client CA"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-ca", "none.pem"], "TLS client CA"),
        (["--tls-client-ca", "{ca}"], "tls_key and tls_client_ca need tls_cert"),
    ],
    ids=[
        "missing",
        "no-key",
        "wrong-key",
        "client-ca-not-a-certificate",
        "client-ca-missing",
        "ca-without-cert",
    ],
)
def test_tls_files_the_proxy_cannot_serve_with_are_one_line_and_exit_2_before_it_listens(
    certs: Certificates,
    tmp_path: Path,
    flags: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(command, "_serve", _would_serve)
    paths = {
        "ca": certs.ca,
        "cert": certs.server_cert,
        "key": certs.server_key,
        "other_key": certs.client_key,
    }
    db = str(tmp_path / "proxy.sqlite3")

    code = main(
        [
            "proxy",
            "bank",
            "--upstream",
            "http://127.0.0.1:1",
            "--port",
            "0",
            "--db",
            db,
            *[flag.format(**paths) for flag in flags],
        ]
    )

    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert not Path(db).exists()  # refused before the store was made


def _would_serve(*_: Any) -> int:
    raise AssertionError("the proxy went on to serve")
