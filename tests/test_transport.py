"""The network options (transport.py) without a partner: parsing, the checks of the files, the curl
options of reproducers, the wording of TLS failures, and serve's TLS settings."""

from __future__ import annotations

import argparse
import subprocess

import pytest
import requests

from mpesa_atm.errors import ConfigError, UsageError
from mpesa_atm.masking import is_secret_header
from mpesa_atm.reporting.exchange import masked_headers
from mpesa_atm.settings import load_settings
from mpesa_atm.transport import Network, add_network_options, refused_outside_envelope, tls_problem


def parse(*argv: str) -> Network:
    parser = argparse.ArgumentParser()
    add_network_options(parser)
    return Network.from_args(parser.parse_args(list(argv)))


def test_the_flags_are_curls_and_headers_repeat(certs):
    network = parse(
        "--cacert", str(certs.ca), "--cert", str(certs.client_cert), "--key", str(certs.client_key),
        "-H", "X-Api-Key: abc", "--header", "X-Partner:  acme ",
    )  # fmt: skip

    assert network == Network(
        cacert=str(certs.ca),
        cert=str(certs.client_cert),
        key=str(certs.client_key),
        headers=(("X-Api-Key", "abc"), ("X-Partner", "acme")),
    )
    assert parse("-k").insecure and parse("--insecure").insecure


@pytest.mark.parametrize("header", ["no colon", ": value", "Name:", "Bad Name: x", "X-A\tB: y"])
def test_a_header_that_is_not_name_colon_value_is_a_usage_error(header, capsys):
    with pytest.raises(SystemExit) as exited:
        parse("-H", header)
    assert exited.value.code == 2
    assert "expected 'Name: value'" in capsys.readouterr().err


def test_headers_from_a_file_skip_blank_lines_and_comments(tmp_path):
    listed = tmp_path / "headers"
    listed.write_text("# gateway\n\nX-Api-Key: abc\r\nX-Partner: acme\n")

    assert parse("-H", f"@{listed}", "-H", "X-More: 1").headers == (
        ("X-Api-Key", "abc"),
        ("X-Partner", "acme"),
        ("X-More", "1"),
    )


def test_a_header_file_that_cannot_be_read_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse("-H", f"@{tmp_path / 'missing'}")
    assert "cannot read" in capsys.readouterr().err


def test_files_are_checked_when_the_network_is_made(certs, tmp_path):
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        [
            "openssl",
            "pkey",
            "-in",
            str(certs.client_key),
            "-aes256",
            "-passout",
            "pass:x",
            "-out",
            str(encrypted),
        ],
        check=True,
        capture_output=True,
    )
    with pytest.raises(UsageError, match="needs the certificate it belongs to") as error:
        Network(key=str(certs.client_key))
    assert error.value.as_flag().startswith("--key ")
    with pytest.raises(ConfigError, match=r"--cacert .*missing\.pem: No such file"):
        Network(cacert=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="no PEM certificate in it"):
        Network(cacert=str(certs.client_key))
    with pytest.raises(ConfigError, match="the key is encrypted: give one without a passphrase"):
        Network(cert=str(certs.client_cert), key=str(encrypted))
    with pytest.raises(ConfigError, match=r"not a certificate and its key \(without --key"):
        Network(cert=str(certs.client_cert))
    with pytest.raises(ConfigError, match="not a certificate and its key"):
        Network(cert=str(certs.client_cert), key=str(certs.stranger_key))
    with pytest.raises(ConfigError, match=r"--key .*: No such file"):
        Network(cert=str(certs.client_cert), key=str(tmp_path / "missing.key"))


@pytest.mark.network
def test_cacert_and_insecure_win_over_requests_ca_bundle(serve_tls_app, certs, monkeypatch):
    async def ok(scope, receive, send):
        if scope["type"] == "lifespan":  # the fixture serves an app with its lifespan, as the mocks
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    url = serve_tls_app(ok)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs.other_ca))

    with pytest.raises(requests.exceptions.SSLError):  # the variable alone: not trusted
        Network().session().get(url, timeout=10)
    assert Network(cacert=str(certs.ca)).session().get(url, timeout=10).text == "ok"
    assert Network(insecure=True).session().get(url, timeout=10).text == "ok"


def test_curl_options_quote_files_absolutely_and_read_secret_headers_from_the_shell(certs, monkeypatch):
    monkeypatch.chdir(certs.ca.parent)
    network = Network(
        cacert="ca.pem",
        cert="client.pem",
        key="client.key",
        insecure=True,
        headers=(("Authorization", "Bearer s3cret"), ("X-Partner", "it's acme")),
    )

    options = " ".join(network.curl_options())

    assert options == (
        f"--insecure --cacert {certs.ca} --cert {certs.client_cert} --key {certs.client_key} "
        "-H 'Authorization: '\"$AUTHORIZATION\" -H 'X-Partner: it'\"'\"'s acme'"
    )
    assert network.secret_variables() == ["AUTHORIZATION"]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("X-Api-Key", True),
        ("X-Auth-Token", True),
        ("Ocp-Apim-Subscription-Key", True),
        ("Cookie", True),
        ("X-Partner", False),
        ("Content-Type", False),
        ("WWW-Authenticate", False),
    ],
)
def test_a_header_is_secret_by_its_name(name, secret):
    assert is_secret_header(name) is secret
    assert (masked_headers(((name, "value"),))[0][1] == "value") is not secret


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "HTTPSConnectionPool(host='h', port=1): Max retries exceeded (Caused by SSLError(SSLCertVerif"
            "icationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
            "certificate (_ssl.c:1006)')))",
            "TLS: its certificate is not trusted (self-signed certificate): give its CA with --cacert "
            "FILE, or --insecure",
        ),
        (
            "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)",
            "TLS: it wants a client certificate: give one with --cert FILE and --key FILE",
        ),
        (
            "[SSL: WRONG_VERSION_NUMBER] wrong version number",
            "TLS: it does not speak TLS there: an http:// URL?",
        ),
        ("Connection refused", None),
    ],
)
def test_tls_failures_are_worded_with_the_flag_that_fixes_them(text, words):
    assert tls_problem(text) == words
    assert tls_problem(ConnectionError(text)) == words


@pytest.mark.parametrize(
    ("status", "body", "refused"),
    [
        (401, b'{"message": "Unauthorized"}', True),
        (403, b"<html>Forbidden</html>", True),
        (401, b'{"output_ResponseCode": "-4", "output_ResponseDesc": "Authentication Failed"}', False),
        (404, b"Not Found", False),
        (200, b"{}", False),
    ],
)
def test_a_refusal_outside_the_envelope_is_a_401_or_403_without_a_response_code(status, body, refused):
    assert refused_outside_envelope(status, body) is refused


def test_serves_tls_settings_come_from_the_config_file_the_environment_and_flags(tmp_path):
    config = tmp_path / "harness.toml"
    config.write_text('tls_cert = "file.pem"\ntls_key = "file.key"\ntls_client_ca = "file-ca.pem"\n')

    from_file = load_settings(config_file=config, env={})
    from_env = load_settings(config_file=config, env={"MPESA_ATM_TLS_CERT": "env.pem"})
    from_flag = load_settings(config_file=config, env={"MPESA_ATM_TLS_CERT": "env.pem"}, tls_cert="flag.pem")

    assert (from_file.tls_cert, from_file.tls_key, from_file.tls_client_ca) == (
        "file.pem",
        "file.key",
        "file-ca.pem",
    )
    assert from_env.tls_cert == "env.pem" and from_flag.tls_cert == "flag.pem"
    assert load_settings(env={}).tls_cert is None
    with pytest.raises(ConfigError, match="tls_key and tls_client_ca need tls_cert"):
        load_settings(env={"MPESA_ATM_TLS_CLIENT_CA": "ca.pem"})
