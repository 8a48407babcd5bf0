"""The command line that runs a campaign of `mpesa-atm fuzz` again, as its HTML page shows it: the same
options and seed, never a secret."""

from __future__ import annotations

import argparse
import os
import shlex

from mpesa_atm.settings import ENV_PREFIX
from mpesa_atm.transport import Network

__all__ = ["DEFAULTS", "rerun_command"]

# The defaults of fuzz's options that have one (fuzz/command.py gives them), which the command that
# runs a campaign again leaves out.
DEFAULTS: dict[str, object] = {"max_examples": 100, "workers": 1, "wait": 10.0, "auth_probes": 3}
# The options of a campaign as that command writes them, after the role, --url and --seed, in the order
# of --help: (flag, dest). The network's come after them, as the reproducers write them. Left out: the
# files a campaign writes (--junit-xml, --report, --har: running it again does not overwrite the page
# it is read on), and --password and --control-token, which it reads from MPESA_ATM_PASSWORD and
# MPESA_ATM_CONTROL_TOKEN instead.
_RERUN_OPTIONS = (
    ("--path", "path"),
    ("--max-examples", "max_examples"),
    ("--workers", "workers"),
    ("--timeout", "timeout"),
    ("--wait", "wait"),
    ("--max-failures", "max_failures"),
    ("--max-time", "max_time"),
    ("--max-response-time", "max_response_time"),
    ("--currency", "currency"),
    ("--check", "check"),
    ("--exclude-check", "exclude_check"),
    ("--strict", "strict"),
    ("--require-exercised", "require_exercised"),
    ("--config", "config"),
    ("--no-harness", "no_harness"),
    ("--username", "bank_username"),
    ("--shortcode", "bank_shortcode"),
    ("--other-shortcode", "other_shortcode"),
    ("--tokens", "tokens"),
    ("--auth-probes", "auth_probes"),
)
_FILES = frozenset({"config", "tokens"})  # read again from wherever the command is run


def rerun_command(args: argparse.Namespace, network: Network, seed: int) -> str:
    """The command line that runs the campaign of `args` again with `seed`, for a shell: the options
    given (files by absolute path) and never a secret. A password given with --password is left for
    MPESA_ATM_PASSWORD to give, a secret header's value for a shell variable named after it (as the
    reproducers do); a comment at the end names the variables to set. The environment's MPESA_ATM_*
    variables are read again as they are where it runs."""
    words = ["mpesa-atm", "fuzz", args.role, "--url", args.url, "--seed", str(seed)]
    for flag, dest in _RERUN_OPTIONS:
        value = getattr(args, dest)
        if value is None or value is False or value == [] or value == DEFAULTS.get(dest):
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, list):  # repeated: --path's OPERATION=PATH, or names
            for item in value:
                words += [flag, "=".join(item) if isinstance(item, tuple) else str(item)]
        else:
            words += [flag, os.path.abspath(value) if dest in _FILES else str(value)]
    command = " ".join([shlex.join(words), *network.curl_options()])
    needed = network.secret_variables()
    if getattr(args, "control_token", None) is not None:
        needed.insert(0, ENV_PREFIX + "CONTROL_TOKEN")
    if args.bank_password is not None:
        needed.insert(0, ENV_PREFIX + "PASSWORD")
    return command + (f"  # set first: {', '.join(needed)}" if needed else "")
