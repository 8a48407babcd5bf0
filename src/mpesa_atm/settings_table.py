"""How a setting is declared once (`setting()`: its default, kind, bounds, config-file key, MPESA_ATM_*
variable, flag and help, kept in its dataclass field) and the readers that follow from the table of
them: the config file, the variables, the argparse flags, the bounds checks. settings.py declares them.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from mpesa_atm.errors import ConfigError
from mpesa_atm.reachable import url_problem

__all__ = [
    "DAYS",
    "ENV_PREFIX",
    "FILE",
    "HOURS",
    "SECONDS",
    "SWITCH",
    "TEXT",
    "URL",
    "WHOLE",
    "Kind",
    "Setting",
    "add_flags",
    "check_keys",
    "check_url",
    "flags_of",
    "read_env",
    "read_file",
    "setting",
    "table_of",
    "typed",
    "variables_of",
]

ENV_PREFIX = "MPESA_ATM_"


def _kept(value: Any, where: str) -> Any:
    return value


def _no_check(name: str, value: Any) -> None:
    pass


@dataclass(frozen=True)
class Kind:
    """A kind of setting: what the config file must hold, how a variable's text is read, the flag's
    argparse type, how the value is written back into a variable, and the bounds of every value."""

    holds: type  # in the config file ("journal_limit must be a int, not 'ten'")
    said: str = ""  # a variable's text that `parse` refuses: "MPESA_ATM_X must be <said>, not '...'"
    parse: Callable[[str], Any] = str  # a variable's text -> the value (ValueError: refused)
    finish: Callable[[Any, str], Any] = _kept  # the value read -> the setting's; `where` names its source
    flag_type: Callable[[str], Any] | None = None  # the flag's argparse type (None: the text)
    metavar: str | None = None  # the flag's value in --help (None: the flag's name in capitals)
    text: Callable[[Any], str] = str  # the setting's value as its variable says it
    check: Callable[[str, Any], None] = _no_check  # the bounds of any value (ConfigError naming `name`)


# A window of a million days or more is refused, as by the flag: timedelta stops at 999,999,999 days.
_MOST_DAYS = 1e6


def _days(days: float, where: str) -> timedelta:
    if not 0 < days < _MOST_DAYS:
        raise ConfigError(f"{where} must be a number of days more than 0 and under 1000000, not {days!r}")
    return timedelta(days=days)


def _hours(hours: float, where: str) -> timedelta:
    if not 0 < hours < _MOST_DAYS * 24:
        raise ConfigError(f"{where} must be a number of hours more than 0, not {hours!r}")
    return timedelta(hours=hours)


def _days_flag(text: str) -> timedelta:
    try:
        days = float(text)
    except ValueError:
        days = float("nan")
    if not 0 < days < _MOST_DAYS:
        raise argparse.ArgumentTypeError(f"a number of days more than 0, not {text!r}")
    return timedelta(days=days)


_SWITCH_WORDS = {"true": True, "1": True, "false": False, "0": False}


def _switch(text: str) -> bool:
    if text.lower() not in _SWITCH_WORDS:
        raise ValueError(text)
    return _SWITCH_WORDS[text.lower()]


def _more_than_zero_seconds(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be more than 0 seconds, not {value!r}")


def check_url(what: str, url: str) -> None:
    problem = url_problem(url)
    if problem is not None:
        raise ConfigError(f"{what}: {problem}")


TEXT = Kind(str)
URL = Kind(str, check=check_url, metavar="URL")
FILE = Kind(str, text=lambda path: str(Path(path).resolve()), metavar="FILE")  # absolute: read anywhere
WHOLE = Kind(int, "a whole number", int, flag_type=int, metavar="N")
SECONDS = Kind(float, "a number of seconds", float, flag_type=float, check=_more_than_zero_seconds)
SWITCH = Kind(bool, "true or false (1 or 0)", _switch, text=lambda on: "true" if on else "false")
DAYS = Kind(
    float,
    "a number of days",
    float,
    finish=_days,
    flag_type=_days_flag,
    metavar="DAYS",
    text=lambda window: repr(window.total_seconds() / 86400),
)
HOURS = Kind(float, finish=_hours)


@dataclass(frozen=True)
class Setting:
    """How a field is set besides its default (all but `kind` optional)."""

    kind: Kind
    file: str | None = None  # its key in the config file; "section.key" in a [section]
    variable: str | None = None  # MPESA_ATM_<variable>
    flag: str | None = None  # of `serve`, and of any command that reads the setting from a flag
    metavar: str | None = None  # the flag's value in --help (None: its kind's)
    help: str | None = None  # the flag's
    minimum: int | None = None  # the least value allowed

    def check(self, name: str, value: Any) -> None:
        if value is None:  # not set
            return
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{name} must be at least {self.minimum}")
        self.kind.check(name, value)


_SETTING = "mpesa_atm.setting"  # the key of a field's Setting in its metadata


def setting(default: Any, kind: Kind = TEXT, *, factory: Callable[[], Any] | None = None, **how: Any) -> Any:
    """A dataclass field with its default and how it is set (`Setting`'s fields)."""
    metadata = {_SETTING: Setting(kind, **how)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def table_of(cls: type) -> dict[str, Setting]:
    """The settings a dataclass declares with `setting()`, by name, in the order of its fields."""
    return {f.name: f.metadata[_SETTING] for f in dataclasses.fields(cls) if _SETTING in f.metadata}


def check_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = set(table) - set(allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")


def typed(value: Any, kind: type, where: str) -> Any:
    """`value`, of the config file, if it is a `kind` (an int for a float too)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{where} must be a {kind.__name__}, not {value!r}")
    return value


def read_file(path: Path, table: Mapping[str, Setting]) -> dict[str, Any]:
    """The settings a TOML config file sets, by name; a key no setting has is refused."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    keys: dict[str, dict[str, str]] = {"": {}}  # the top level's ("") and each [section]'s: key -> name
    for name, how in table.items():
        if how.file is not None:
            section, _, key = how.file.rpartition(".")
            keys.setdefault(section, {})[key] = name
    check_keys(data, [*keys[""], *(section for section in keys if section)], str(path))
    tables = {"": data}
    for section in keys:
        if section:
            tables[section] = typed(data.get(section, {}), dict, f"[{section}]")
            check_keys(tables[section], keys[section], f"[{section}]")
    out: dict[str, Any] = {}
    for section, names in keys.items():
        for key, name in names.items():
            if key in tables[section]:
                kind = table[name].kind
                where = f"{section}.{key}" if section else key
                value = typed(tables[section][key], kind.holds, f"[{where}]" if kind.holds is dict else where)
                out[name] = kind.finish(value, where)
    return out


def read_env(env: Mapping[str, str], table: Mapping[str, Setting]) -> dict[str, Any]:
    """The settings MPESA_ATM_* variables set, by name (a variable set empty sets nothing)."""
    out: dict[str, Any] = {}
    for name, how in table.items():
        variable = ENV_PREFIX + how.variable if how.variable is not None else ""
        raw = env.get(variable) if variable else None
        if not raw:
            continue
        try:
            value = how.kind.parse(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be {how.kind.said}, not {raw!r}") from None
        out[name] = how.kind.finish(value, variable)
    return out


def variables_of(values: object, table: Mapping[str, Setting], names: Iterable[str]) -> dict[str, str]:
    """The MPESA_ATM_* variables that give the settings `names` the values they have in `values` (an
    instance of the dataclass) in another process; a setting not set (None, or empty) is left out."""
    out = {}
    for name in names:
        how, value = table[name], getattr(values, name)
        if how.variable is not None and value is not None and value != "":
            out[ENV_PREFIX + how.variable] = how.kind.text(value)
    return out


def add_flags(
    parser: Any, table: Mapping[str, Setting], names: Iterable[str], helps: Mapping[str, str]
) -> None:
    """Adds the flags of the settings `names` to `parser` (or an argument group), each to the Namespace
    under the setting's name, None when not given; `helps` words a flag for a command its own way."""
    for name in names:
        how = table[name]
        assert how.flag is not None, f"{name} has no flag"
        options: dict[str, Any] = {"dest": name, "help": helps.get(name, how.help)}
        if how.kind is SWITCH:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["metavar"] = how.metavar or how.kind.metavar or how.flag.lstrip("-").upper()
            if how.kind.flag_type is not None:
                options["type"] = how.kind.flag_type
        parser.add_argument(how.flag, **options)


def flags_of(args: argparse.Namespace, table: Mapping[str, Setting]) -> dict[str, Any]:
    """The settings that flags `add_flags` added set in `args`, by name (None: not given)."""
    return {name: value for name, value in vars(args).items() if name in table}
