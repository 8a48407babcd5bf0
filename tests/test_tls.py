"""Networks of real partners, against real TLS servers on loopback: the mocks served over HTTPS (and
mutual TLS), fuzz and verify with --cacert, --cert/--key, --insecure and -H, a gateway that wants a
header, HTTPS_PROXY, and the one line (exit 2) for each way of not getting through."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from mpesa_atm.cli import main
from mpesa_atm.fuzz.curl import curl_command
from mpesa_atm.mocks import create_app
from mpesa_atm.settings import Settings
from mpesa_atm.transport import Network
from tests.fixtures.tls import Certificates, ConnectProxy, Gateway

pytestmark = pytest.mark.network

# A few cases per operation: these tests are about getting through, not about the checks.
FEW = ["--max-examples", "3", "--seed", "1"]
API_KEY = "gw-k3y-0f-the-test"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, hypothesis_homes):
    for name in ("USERNAME", "PASSWORD", "SHORTCODE", "CLIENT_TIMEOUT", "CONFIG", "CONTROL_TOKEN"):
        monkeypatch.delenv(f"MPESA_ATM_{name}", raising=False)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PACT_DO_NOT_TRACK", "true")


@pytest.fixture(scope="module")
def https_mocks(serve_for_module, certs: Certificates):
    """Both mocks served over HTTPS by `mpesa-atm serve --tls-cert --tls-key`."""
    return serve_for_module(
        "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key), tls=certs.context()
    )


@pytest.fixture(scope="module")
def mutual_tls_bank(serve_for_module, certs: Certificates, tmp_path_factory):
    """The bank mock served with --tls-client-ca: a client certificate of the CA is required."""
    return serve_for_module(
        "--tls-cert",
        str(certs.server_cert),
        "--tls-key",
        str(certs.server_key),
        "--tls-client-ca",
        str(certs.ca),
        role="bank",
        db_path=tmp_path_factory.mktemp("mtls") / "bank.sqlite3",
        tls=certs.context(client=True),
    )


def run(capsys, *argv: str) -> tuple[int, str, list[str]]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def test_serve_with_a_certificate_announces_https_and_both_mocks_pass_fuzz_and_verify(
    https_mocks, certs, capsys
):
    assert https_mocks.bank_url.startswith("https://") and https_mocks.ipg_url.startswith("https://")
    assert "bank mock on https://127.0.0.1:" in https_mocks.log()
    cacert = ["--cacert", str(certs.ca)]

    for role in ("bank", "ipg"):
        code, out, err = run(capsys, "fuzz", role, "--url", https_mocks.urls[role], *FEW, *cacert)
        assert (code, err) == (0, []), out
        code, out, err = run(capsys, "verify", role, "--url", https_mocks.urls[role], *cacert)
        assert (code, err) == (0, []), out
        assert " 0 failed" in out


@pytest.mark.parametrize("command", ["fuzz", "verify"])
@pytest.mark.parametrize("trusted", ["nothing given", "another CA"])
def test_an_untrusted_certificate_exits_2_with_one_line_naming_cacert(
    https_mocks, certs, capsys, command, trusted
):
    extra = ["--cacert", str(certs.other_ca)] if trusted == "another CA" else []
    more = FEW if command == "fuzz" else []

    code, out, err = run(capsys, command, "bank", "--url", https_mocks.bank_url, *more, *extra)

    assert code == 2, out
    assert len(err) == 1, err
    assert "TLS: its certificate is not trusted" in err[0]
    assert "give its CA with --cacert FILE, or --insecure" in err[0]


def test_insecure_reaches_a_certificate_nobody_trusts(https_mocks, capsys):
    code, out, err = run(capsys, "fuzz", "bank", "--url", https_mocks.bank_url, *FEW, "--insecure")
    assert (code, err) == (0, []), out
    code, out, err = run(capsys, "verify", "bank", "--url", https_mocks.bank_url, "-k")
    assert (code, err) == (0, []), out


@pytest.mark.parametrize("command", ["fuzz", "verify"])
def test_mutual_tls_refuses_a_client_without_certificate_and_accepts_one_with(
    mutual_tls_bank, certs, capsys, command
):
    url = mutual_tls_bank.bank_url
    more = FEW if command == "fuzz" else []
    cacert = ["--cacert", str(certs.ca)]

    code, out, err = run(capsys, command, "bank", "--url", url, *more, *cacert)
    assert code == 2, out
    assert len(err) == 1 and "give one with --cert FILE and --key FILE" in err[0], err

    mine = ["--cert", str(certs.client_cert), "--key", str(certs.client_key)]
    code, out, err = run(capsys, command, "bank", "--url", url, *more, *cacert, *mine)
    assert (code, err) == (0, []), out

    stranger = ["--cert", str(certs.stranger_cert), "--key", str(certs.stranger_key)]
    code, out, err = run(capsys, command, "bank", "--url", url, *more, *cacert, *stranger)
    assert code == 2, out
    assert len(err) == 1, err
    assert f"check that --cert {certs.stranger_cert} is signed by a CA it trusts" in err[0]


def test_a_gateway_that_wants_a_header_refuses_everything_without_it_and_lets_the_campaign_through_with_it(
    serve_tls_app, certs, tmp_path, capsys
):
    gateway = Gateway(
        create_app("bank", Settings(db_path=str(tmp_path / "bank.sqlite3"))), "X-Api-Key", API_KEY
    )
    url = serve_tls_app(gateway)
    cacert = ["--cacert", str(certs.ca)]

    for command, more in (("fuzz", FEW), ("verify", [])):
        code, out, err = run(capsys, command, "bank", "--url", url, *more, *cacert)
        assert code == 2, out
        assert len(err) == 1, err
        assert "HTTP 401" in err[0] and "Unauthorized: no valid API key" in err[0]
        assert "-H 'Name: value'" in err[0]

    gateway.seen.clear()
    header = ["-H", f"X-Api-Key: {API_KEY}"]
    code, out, err = run(capsys, "fuzz", "bank", "--url", url, *FEW, *cacert, *header)
    assert (code, err) == (0, []), out
    assert "PASSED" in out.splitlines()[-1]
    assert API_KEY not in out  # the reproducers would read it from $X_API_KEY
    code, out, err = run(capsys, "verify", "bank", "--url", url, *cacert, *header)
    assert (code, err) == (0, []), out
    assert gateway.seen and set(gateway.seen) == {API_KEY.encode()}  # every request, states included


def test_headers_come_from_a_file_with_at(serve_tls_app, certs, tmp_path, capsys):
    gateway = Gateway(
        create_app("bank", Settings(db_path=str(tmp_path / "bank.sqlite3"))), "X-Api-Key", API_KEY
    )
    url = serve_tls_app(gateway)
    headers = tmp_path / "headers.txt"
    headers.write_text(f"# the gateway's key\nX-Api-Key: {API_KEY}\nX-Partner: acme\n")

    code, out, err = run(
        capsys, "verify", "bank", "--url", url, "--cacert", str(certs.ca), "-H", f"@{headers}"
    )

    assert (code, err) == (0, []), out
    assert set(gateway.seen) == {API_KEY.encode()}


def test_https_proxy_is_honoured_by_fuzz_and_verify(https_mocks, certs, capsys, monkeypatch):
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = https_mocks.bank_url
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        code, out, err = run(capsys, "fuzz", "bank", "--url", url, *FEW, "--cacert", str(certs.ca))
        assert (code, err) == (0, []), out
        through_fuzz = len(proxy.tunnels)
        code, out, err = run(capsys, "verify", "bank", "--url", url, "--cacert", str(certs.ca))
        assert (code, err) == (0, []), out
    where = url.removeprefix("https://")
    assert through_fuzz > 0 and set(proxy.tunnels) == {where}
    assert len(proxy.tunnels) > through_fuzz  # verify's requests and state changes went through too


def test_a_reproducer_carries_the_network_and_works_as_typed(mutual_tls_bank, certs, tmp_path):
    network = Network(
        cacert=str(certs.ca),
        cert=str(certs.client_cert),
        key=str(certs.client_key),
        headers=(("X-Api-Key", API_KEY), ("X-Partner", "acme")),
    )
    body = {
        "input_CustomerMSISDN": "243843330333",
        "input_Amount": "200",
        "input_Currency": "CDF",
        "input_TransactionID": "RPR0D0C3R1",
    }
    command = curl_command(
        f"{mutual_tls_bank.bank_url}/token-generation", body, options=network.curl_options()
    )

    assert API_KEY not in command
    assert "'X-Api-Key: '\"$X_API_KEY\"" in command and "-H 'X-Partner: acme'" in command
    assert f"--cacert {certs.ca} --cert {certs.client_cert} --key {certs.client_key}" in command
    done = subprocess.run(
        ["sh", "-c", command],
        capture_output=True,
        text=True,
        env={**os.environ, "X_API_KEY": API_KEY},
        cwd=tmp_path,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert '"output_ResponseCode": "0"' in done.stdout.replace('":"', '": "')


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", "missing.pem"], "TLS certificate missing.pem: No such file or directory"),
        (["--tls-cert", "{ca}"], "not a certificate and its key (without --tls-key"),
        (["--tls-cert", "{cert}", "--tls-key", "{other_key}"], "not a certificate and its key"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-ca", "{key}"], "TLS client CA"),
        (["--tls-key", "{key}"], "tls_key and tls_client_ca need tls_cert"),
    ],
    ids=["missing", "no-key", "wrong-key", "client-ca-not-a-certificate", "key-without-cert"],
)
def test_serve_with_a_certificate_it_cannot_use_exits_2_with_one_line_and_leaves_nothing_running(
    certs, tmp_path, flags, message
):
    paths = {
        "ca": certs.ca,
        "cert": certs.server_cert,
        "key": certs.server_key,
        "other_key": certs.client_key,
    }
    argv = [flag.format(**paths) for flag in flags]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPESA_ATM_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mpesa_atm", "serve", "--ipg-port", "0", "--bank-port", "0", *argv],
        cwd=tmp_path,
        env={**env, "MPESA_ATM_DB": str(tmp_path / "db.sqlite3")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 2, out + err
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err
    with pytest.raises(ProcessLookupError):  # no role process, no worker left in its group
        os.killpg(process.pid, 0)


def test_verify_writes_junit_over_https(https_mocks, certs, tmp_path, capsys):
    junit = tmp_path / "verify.xml"
    code, out, err = run(
        capsys,
        "verify",
        "bank",
        "--url",
        https_mocks.bank_url,
        "--cacert",
        str(certs.ca),
        "--junit-xml",
        str(junit),
    )
    assert (code, err) == (0, []), out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0" and int(suite.get("tests", "0")) >= 1
