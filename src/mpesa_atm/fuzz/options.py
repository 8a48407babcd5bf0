"""A campaign's options: the kinds and phases there are, the options as given to run_campaign, their
check (UsageError for one that does not fit, else the checks chosen, bound to their budgets and limits)
and how a report shows them."""

from __future__ import annotations

import dataclasses
from typing import Literal

from mpesa_atm.errors import UsageError
from mpesa_atm.fuzz.bounds import Bounds
from mpesa_atm.fuzz.checks import BOUND_CHECKS, CheckInfo, checks_for
from mpesa_atm.fuzz.probe_checks import AUTH_PROBING, AuthProbes
from mpesa_atm.fuzz.response_time import within
from mpesa_atm.fuzz.target import Target
from mpesa_atm.fuzz.tokens import Token
from mpesa_atm.operations import CONTROL_PREFIX
from mpesa_atm.spec import load_spec

__all__ = ["KINDS", "PHASES", "Kind", "Options", "checked", "shown_options"]

Kind = Literal["realistic", "positive", "negative"]
KINDS: tuple[Kind, ...] = ("realistic", "positive", "negative")
PHASES = ("fuzz", "stateful")


@dataclasses.dataclass(frozen=True)
class Options:
    """run_campaign's options as given (the seed drawn when none was)."""

    max_examples: int
    seed: int
    workers: int
    asked_checks: tuple[str, ...] | None  # None: all of the role's
    excluded_checks: tuple[str, ...]
    strict: bool
    require_exercised: bool
    kinds: tuple[Kind, ...]
    phases: tuple[str, ...]
    currencies: tuple[str, ...]
    use_harness: bool
    tokens: tuple[Token, ...]
    auth_probes: int
    bounds: Bounds = dataclasses.field(default_factory=Bounds)


def checked(target: Target, options: Options) -> tuple[CheckInfo, ...]:
    """The campaign's checks, the auth probes bound to their budget; UsageError for an option that
    does not fit."""
    if options.max_examples < 1:
        raise UsageError("must be at least 1", argument="max_examples")
    if options.workers < 1:
        raise UsageError("must be at least 1", argument="workers")
    unknown_kinds = sorted(set(options.kinds) - set(KINDS))
    unknown_phases = sorted(set(options.phases) - set(PHASES))
    if unknown_kinds or unknown_phases or not options.kinds:
        raise UsageError(f"unknown kinds {unknown_kinds} or phases {unknown_phases}")
    chosen = _chosen_checks(target, options)
    if options.auth_probes < 0:
        raise UsageError("must be 0 or more", argument="auth_probes")
    if options.tokens and (target.role != "ipg" or "stateful" not in options.phases):
        raise UsageError("are spent by an iPG campaign's stateful phase", argument="tokens")
    allowed = set(load_spec("common.yaml")["components"]["schemas"]["Currency"]["enum"])
    currencies = options.currencies
    if not currencies or set(currencies) - allowed:
        raise UsageError(
            f"must be ISO 4217 codes of the document, not {sorted(set(currencies) - allowed)}",
            argument="currencies",
        )
    budget = AuthProbes(options.auth_probes)
    return tuple(_bound(info, budget, options.bounds) for info in chosen)


def _bound(info: CheckInfo, budget: AuthProbes, bounds: Bounds) -> CheckInfo:
    """`info`, its check drawing its probes from the campaign's budget, or holding each answer to the
    campaign's --max-response-time."""
    if info.name in AUTH_PROBING:
        return dataclasses.replace(info, function=budget.bound(info.function))
    if info.name == "response_time" and bounds.max_response_time is not None:
        return dataclasses.replace(info, function=within(bounds.max_response_time))
    return info


def _check_bounds(bounds: Bounds) -> None:
    if bounds.max_failures is not None and bounds.max_failures < 1:
        raise UsageError("must be at least 1", argument="max_failures")
    for name, seconds in (("max_time", bounds.max_time), ("max_response_time", bounds.max_response_time)):
        if seconds is not None and not seconds > 0:  # not NaN either
            raise UsageError(f"must be a positive number of seconds, not {seconds:g}", argument=name)


def _chosen_checks(target: Target, options: Options) -> tuple[CheckInfo, ...]:
    """The checks asked for (all of the role's by default) less those excluded; a check of a bound
    (BOUND_CHECKS) runs when its bound is given, whatever --check names, and not without it."""
    _check_bounds(options.bounds)
    asked = options.asked_checks
    given = {"response_time": options.bounds.max_response_time is not None}
    for name in BOUND_CHECKS:
        if asked is not None and name in asked and not given[name]:
            raise UsageError(f"is needed by the check {name}", argument="max_response_time")
    if asked is not None:
        asked = (*asked, *(name for name in BOUND_CHECKS if given[name] and name not in asked))
    try:
        chosen = checks_for(target.role, asked, options.excluded_checks)
    except ValueError as exc:  # the command's users see the flag that lists them
        raise UsageError(f"{exc} (`mpesa-atm fuzz --list-checks` lists them)") from None
    return tuple(info for info in chosen if info.name not in BOUND_CHECKS or given[info.name])


def shown_options(target: Target, options: Options) -> tuple[tuple[str, str], ...]:
    """The options a report shows beside the seed and the examples (never the password)."""
    checks, excluded, tokens = options.asked_checks, options.excluded_checks, len(options.tokens)
    shown = [
        ("checks", "all of the role's" if checks is None else ", ".join(checks)),
        *((("excluded checks", ", ".join(excluded)),) if excluded else ()),
        ("warnings", "fail the campaign (strict)" if options.strict else "reported, the campaign passes"),
        *(
            (("checks not exercised", "fail the campaign (require exercised)"),)
            if options.require_exercised
            else ()
        ),
        ("kinds", ", ".join(options.kinds)),
        ("phases", ", ".join(options.phases)),
        ("currencies", ", ".join(options.currencies)),
        ("workers", str(options.workers)),
        ("timeout", f"{target.timeout:g} s"),
        (
            "control API",
            (f"used if {CONTROL_PREFIX} answers" + (", with a control token" if target.control_token else ""))
            if options.use_harness
            else "not used (--no-harness)",
        ),
    ]
    if target.paths:
        shown.append(("paths", ", ".join(f"{op}={path}" for op, path in sorted(target.paths.items()))))
    if target.credentials is not None:
        credentials = target.credentials
        shown.append(("credentials", f"{credentials.username}, shortcode {credentials.shortcode}"))
    if target.role == "ipg":
        shown.append(("tokens", f"{tokens} given (--tokens)" if tokens else "none given"))
        auth_probes = options.auth_probes
        shown.append(("auth probes", f"at most {auth_probes} of each" if auth_probes else "none"))
    return tuple(shown)
