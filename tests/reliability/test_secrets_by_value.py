"""The mocks mask a bank's password by its value, not only in `input_Password`: a misspelt field, a
query string, a form, a path, a body in UTF-16 or UTF-32, JSON escapes in a key or a value. And the
store's files are the owner's alone."""

from __future__ import annotations

import json
import re
import secrets
import stat
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote_plus

import httpx
import pytest

from mpesa_atm.passwords import hash_password
from tests.fixtures.mocks import DOCUMENT_REDEMPTION

# Distinctive enough that finding it anywhere can only mean it leaked; '&', '/' and '"' need escaping
# in a form, a path and JSON.
CLEAR = 'Cl3ar&"/' + secrets.token_hex(6)
HASHED = "H4shed&/" + secrets.token_hex(6)  # known to the mock by its scrypt hash only
JSON = {"Content-Type": "application/json"}


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "mpesa-atm.toml"
    path.write_text(
        "[[ipg.banks]]\n"
        'username = "fnb"\n'
        f"password = {json.dumps(CLEAR)}\n"
        'shortcodes = ["49272"]\n'
        "[[ipg.banks]]\n"
        'username = "hashed"\n'
        f'password_hash = "{hash_password(HASHED)}"\n'
        'shortcodes = ["49273"]\n',
        encoding="utf-8",
    )
    return path


def _escaped(text: str) -> str:
    """Every character as a JSON \\u escape."""
    return "".join(f"\\u{ord(c):04x}" for c in text)


def _odd_shapes(password: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """(path and query, body, headers) of calls that carry `password` where no field name says so."""
    misspelt = json.dumps({**DOCUMENT_REDEMPTION, "input_Password": "x", "input_Passwort": password})
    return [
        ("/token-redemption", misspelt.encode(), JSON),
        ("/token-redemption", b'{"note": "' + password.encode() + b'", broken', JSON),
        (f"/token-redemption?input_Passwort={quote(password, safe='')}", misspelt.encode(), JSON),
        ("/token-redemption", f"input_Passwort={quote_plus(password)}".encode(), {}),
        (f"/token-redemption/{quote(password, safe='')}", misspelt.encode(), JSON),
        ("/token-redemption", misspelt.encode("utf-16"), JSON),
        ("/token-redemption", misspelt.encode("utf-32-le"), JSON),
        ("/token-redemption", (misspelt[:-1] + ", broken").encode("utf-16-le"), JSON),
        ("/token-redemption", f'{{"input_Pa\\u0073sworx": "{_escaped(password)}"}}'.encode(), JSON),
        ("/token-redemption", f'{{"input_Pa\\u0073sworx": "{_escaped(password)}", broken'.encode(), JSON),
        (
            "/token-redemption",
            f'{{"x": "{password[:3]}\\u{ord(password[3]):04X}{password[4:]}"}}'.encode(),
            JSON,
        ),
    ]


def _canonical(text: str) -> str:
    """`text` with what could hide a password undone: percent-encoding, JSON \\u escapes (however
    often escaped), backslashes, NUL bytes between letters."""
    text = unquote_plus(text)
    text = re.sub(r"\\+u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    return text.replace("\\", "").replace("\x00", "")


def _leaks(data: bytes) -> set[str]:
    found = set()
    for encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
        text = data.decode(encoding, errors="ignore")
        found |= {
            name for name, password in (("clear", CLEAR), ("hashed", HASHED)) if password in _canonical(text)
        }
    return found


@pytest.mark.network
def test_a_known_password_is_masked_by_value_in_every_shape(serve, tmp_path):
    served = serve("--config", str(_config(tmp_path)), "--access-log", role="ipg")
    url = served.ipg_url
    # The hashed bank's password, once right: known in clear to the worker from then on.
    right = {**DOCUMENT_REDEMPTION, "input_Username": "hashed", "input_Password": HASHED}
    right["input_BankShortcode"] = "49273"
    assert httpx.post(f"{url}/token-redemption", json=right).json()["output_ResponseCode"] != "-4"

    shapes = [shape for password in (CLEAR, HASHED) for shape in _odd_shapes(password)]
    for target, content, headers in shapes:
        assert httpx.post(url + target, content=content, headers=headers).status_code < 500, (target, content)

    journal = httpx.get(f"{url}/_harness/journal", params={"limit": 100})
    assert len(journal.json()["entries"]) == 1 + len(shapes)
    assert journal.text.count("********") >= len(shapes), "each odd shape is journalled, masked"
    served.stop()  # everything it wrote is on disk
    leaks = {"journal": _leaks(journal.content), "log": _leaks(served.log().encode())}
    leaks |= {path.name: _leaks(path.read_bytes()) for path in tmp_path.glob("served.sqlite3*")}
    assert not {where: found for where, found in leaks.items() if found}


@pytest.mark.network
def test_the_store_files_are_the_owners_alone(serve, tmp_path):
    served = serve("--config", str(_config(tmp_path)), role="ipg")
    assert httpx.post(f"{served.ipg_url}/token-redemption", json=DOCUMENT_REDEMPTION).status_code == 200
    files = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tmp_path.glob("served.sqlite3*")}
    assert {"served.sqlite3", "served.sqlite3-wal", "served.sqlite3-shm", "served.sqlite3.lock"} <= set(files)
    assert {name: oct(mode) for name, mode in files.items() if mode != 0o600} == {}
