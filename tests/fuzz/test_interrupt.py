"""Ctrl-C in the middle of `mpesa-atm fuzz`: the summary of what ran, the files written, exit 130, and no
traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.fuzz.lenient import Partner, serving

# `mpesa-atm` as a terminal's foreground job runs it: Ctrl-C is KeyboardInterrupt. A suite started in
# the background (`.ci/run &`, nohup) passes SIGINT on ignored, as shells do for background jobs, and
# Python then leaves it ignored: the campaign would never hear the signal.
_AS_IN_A_TERMINAL = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
    " from mpesa_atm.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.network
@pytest.mark.parametrize(("role", "workers"), [("bank", 1), ("ipg", 2)])
def test_ctrl_c_prints_the_summary_writes_the_files_and_exits_130(tmp_path, role, workers):
    partner = Partner(role)
    junit, page, har = tmp_path / "fuzz.xml", tmp_path / "fuzz.html", tmp_path / "fuzz.har"
    with serving(partner) as url:
        command = [sys.executable, "-c", _AS_IN_A_TERMINAL, "fuzz", role, "--url", url]
        command += ["--max-examples", "100000", "--seed", "1", "--workers", str(workers)]
        command += ["--junit-xml", str(junit), "--report", str(page), "--har", str(har)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert partner.busy.wait(60), "the campaign never got under way"
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
        finally:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    summary = out.rstrip().splitlines()[-1]
    assert summary.startswith(f"mpesa-atm fuzz {role}: INTERRUPTED: "), out
    assert "note: interrupted (Ctrl-C)" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["interrupted"] == "true" and int(properties["cases"]) > 0
    # What the campaign never reached is skipped, never a passing test case.
    skipped = {
        (case.get("classname"), case.get("name")): case.find("skipped") for case in suite.iter("testcase")
    }
    skipped = {key: element for key, element in skipped.items() if element is not None}
    assert suite.get("skipped") == str(len(skipped))
    assert {element.get("message") for element in skipped.values()} <= {
        "not reached: the campaign was interrupted"
    }
    if role == "ipg":  # the lifecycles come last, and this partner has no control API anyway
        assert {check for _, check in skipped} >= {"token_lifecycle"}
        assert "not reached (" in summary and "token_lifecycle" in summary
    assert "INTERRUPTED" in page.read_text()
    assert har.read_text().startswith("{")
