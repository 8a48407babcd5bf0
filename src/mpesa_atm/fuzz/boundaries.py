"""Phase: the edges of every documented format, sent as valid and otherwise realistic requests, once per
operation after the edge cases: each field's shortest and longest value (for each alternative of its
pattern: `200481239871.52` and `0.01` for an amount), and each value of an enumeration (every
currency). They are derived from the operation's request schema in openapi/, so they follow it.
Then, for a field whose length the document itself limits (32 characters of the references), a value
one character over that limit (kind "over the limit"): the document's break, never to be answered 0.

The credentials are never varied: they must be the campaign's, for the partner to answer on the
merits (and a wrong one is a wrong-password probe, which --auth-probes bounds).
"""

from __future__ import annotations

import random
import re
import string
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, NoReturn

from mpesa_atm.fuzz.cases import Draft, draft_from
from mpesa_atm.fuzz.checks import CheckInfo, probing
from mpesa_atm.fuzz.realistic import realistic_case
from mpesa_atm.fuzz.unit import Unit
from mpesa_atm.fuzz.violations import STATED_LIMITS
from mpesa_atm.spec import operation_definition, resolved

__all__ = [
    "CREDENTIAL_FIELDS",
    "OVER_THE_LIMIT",
    "field_edges",
    "over_the_limit",
    "parse_pattern",
    "request_fields",
    "run",
]

OVER_THE_LIMIT = "over the limit"  # the kind of the cases one character over the document's limit

# The bank's credentials at the iPG: the campaign's own, never a boundary value.
CREDENTIAL_FIELDS = frozenset({"input_Username", "input_Password", "input_BankShortcode"})
# The checks that send requests of their own: an enumeration's values (154 currencies) are sent with
# the checks of the answer only, so that they cost one request each.
_SENDING = frozenset(
    {"replay_is_duplicate", "wrong_password_rejected", "other_shortcode_rejected", "optional_field_left_out"}
)

_PRINTABLE = tuple(chr(code) for code in range(0x20, 0x7F))
_ALNUM = frozenset(string.ascii_letters + string.digits)


def run(unit: Unit, operation_id: str) -> None:
    """Sends each boundary value of each field of `operation_id` in a realistic case of its own."""
    campaign = unit.campaign
    answer_only = tuple(info for info in campaign.checks if info.name not in _SENDING)
    planned = _plan(operation_id, unit)
    with unit.phase_of("boundaries", len(planned)):
        for field, value, draft, kind in planned:
            if unit.stopped:
                return
            unit.history.clear()
            case = realistic_case(unit, operation_id, draft, overrides={field: value})
            if kind == _ENUMERATED:
                _answer_only(unit, case, answer_only)
            else:
                unit.try_case(kind, case)


_ENUMERATED = "enumerated"  # a value of an enumeration, sent with the checks of the answer only


def _plan(operation_id: str, unit: Unit) -> list[tuple[str, str, Draft, str]]:
    """The phase's cases, known before any is sent (for its progress): each (field, value, the draft
    of the rest of the case, kind), drawn from the seed in the order they are sent."""
    campaign = unit.campaign
    rng = random.Random(f"{campaign.seed}/{unit.name}/boundaries")
    realistic = draft_from(rng, campaign.currencies).body(
        operation_id, unit.case_fresh, campaign.target.credentials
    )
    planned: list[tuple[str, str, Draft, str]] = []
    for field, schema in request_fields(operation_id).items():
        if field in CREDENTIAL_FIELDS:
            continue
        preferred = realistic.get(field) or str(schema.get("example", ""))
        kind = _ENUMERATED if "enum" in schema else "boundary"
        for value in field_edges(schema, preferred, rng):
            planned.append((field, value, draft_from(rng, campaign.currencies), kind))
    for field, limit in STATED_LIMITS.items():
        if field in request_fields(operation_id):
            value = over_the_limit(str(realistic.get(field, "")), limit, rng)
            planned.append((field, value, draft_from(rng, campaign.currencies), OVER_THE_LIMIT))
    return planned


def over_the_limit(preferred: str, limit: int, rng: random.Random) -> str:
    """A reference of `limit` + 1 printable ASCII characters: `preferred` (a realistic one) then letters
    and digits, otherwise in its shape (e.g. 33 hexadecimal digits for a 32-character reference)."""
    alphabet = sorted(set(preferred) & _ALNUM) or sorted(_ALNUM)
    value = preferred[: limit + 1]
    return value + "".join(rng.choice(alphabet) for _ in range(limit + 1 - len(value)))


def _answer_only(unit: Unit, case: Any, checks: Sequence[CheckInfo]) -> None:
    unit.sent("boundary", case)
    response = unit.send(case)
    with probing(unit.probe(probes_enabled=False)):
        unit.check(case, response, checks)


@cache
def request_fields(operation_id: str) -> Mapping[str, Mapping[str, Any]]:
    """The request body's fields of `operation_id` and their schemas, as the bundled document has them."""
    document, post = operation_definition(operation_id)
    schema = resolved(document, post["requestBody"]["content"]["application/json"]["schema"])
    return {name: resolved(document, value) for name, value in schema["properties"].items()}


def field_edges(schema: Mapping[str, Any], preferred: str, rng: random.Random) -> tuple[str, ...]:
    """A string field's boundary values: each value of its enumeration; else, for each alternative of its
    pattern, the shortest and the longest value its pattern and minLength/maxLength allow. Characters are
    taken from `preferred` (a realistic value) where the pattern allows them there, else drawn from
    `rng` among the letters and digits it allows (any it allows when none is one).

    Raises ValueError for a pattern of a kind this does not read (a test runs it on every field)."""
    if "enum" in schema:
        return tuple(str(value) for value in schema["enum"])
    shortest = int(schema.get("minLength", 0))
    longest = int(schema.get("maxLength", 64))
    pattern = schema.get("pattern")
    parsed = parse_pattern(pattern) if pattern else [_Repeat(0, longest, (_ANY_ALNUM,))]
    edges: list[str] = []
    for alternative in _alternatives(parsed):
        lengths = sorted(n for n in _lengths(alternative, longest) if shortest <= n <= longest)
        for length in dict.fromkeys(lengths[:1] + lengths[-1:]):
            value = _Builder(preferred, rng).build(alternative, length)
            if pattern and not re.fullmatch(pattern, value):
                raise ValueError(f"built {value!r}, which {pattern!r} does not match")
            if value not in edges:
                edges.append(value)
    return tuple(edges)


@dataclass(frozen=True)
class _Literal:
    char: str


@dataclass(frozen=True)
class _Chars:
    r"""One character among `members` (printable ASCII, in code order): a class, `.`, `\d`."""

    members: tuple[str, ...]


@dataclass(frozen=True)
class _Branch:
    alternatives: tuple[tuple[_Node, ...], ...]


@dataclass(frozen=True)
class _Repeat:
    low: int
    high: int  # _UNBOUNDED for * and +
    items: tuple[_Node, ...]


_Node = _Literal | _Chars | _Branch | _Repeat
Items = Sequence[_Node]
_ANY_ALNUM = _Chars(tuple(c for c in _PRINTABLE if c in _ALNUM))  # a field without a pattern
_UNBOUNDED = sys.maxsize
_CATEGORIES: dict[str, Callable[[str], bool]] = {
    "d": str.isdigit,
    "w": lambda c: c in _ALNUM or c == "_",
    "s": str.isspace,
}
_QUANTIFIER = re.compile(r"\{(\d*)(,?)(\d*)\}")


def parse_pattern(pattern: str) -> list[_Node]:
    r"""The items of `pattern` in the subset of regular expressions the documents' formats use:
    literals and escaped punctuation, classes (ranges, negation, \d \w \s), `.`, groups (spliced into
    the sequence: only their alternatives and repeats count here), `|`, and the quantifiers ? * + {n}
    {n,} {n,m}; anchors are dropped (the values are whole strings). Raises ValueError for the rest."""
    return _PatternReader(pattern).read()


class _PatternReader:
    def __init__(self, pattern: str) -> None:
        self.text = pattern
        self.at = 0

    def read(self) -> list[_Node]:
        items = self._alternation()
        if self.at < len(self.text):
            self._unread("an unbalanced )")
        return items

    def _unread(self, what: str) -> NoReturn:
        raise ValueError(f"a pattern element this does not read: {what} at {self.at} in {self.text!r}")

    def _next(self) -> str:
        if self.at >= len(self.text):
            self._unread("the end")
        char = self.text[self.at]
        self.at += 1
        return char

    def _take(self, char: str) -> bool:
        if self.text.startswith(char, self.at):
            self.at += len(char)
            return True
        return False

    def _alternation(self) -> list[_Node]:
        alternatives = [self._sequence()]
        while self._take("|"):
            alternatives.append(self._sequence())
        if len(alternatives) == 1:
            return alternatives[0]
        return [_Branch(tuple(tuple(alternative) for alternative in alternatives))]

    def _sequence(self) -> list[_Node]:
        items: list[_Node] = []
        while self.at < len(self.text) and self.text[self.at] not in "|)":
            if self._take("^") or self._take("$"):
                continue
            atom = self._atom()
            counts = self._quantifier()
            if counts is None:
                items.extend(atom)
            else:
                items.append(_Repeat(*counts, tuple(atom)))
        return items

    def _atom(self) -> list[_Node]:
        char = self._next()
        if char == "(":
            if self._take("?") and not self._take(":"):
                self._unread("a group other than (...) and (?:...)")
            items = self._alternation()
            if not self._take(")"):
                self._unread("an unclosed (")
            return items
        if char == "[":
            return [self._class()]
        if char == ".":
            return [_Chars(_PRINTABLE)]
        if char == "\\":
            return [self._escape()]
        if char in "*+?":
            self._unread(f"{char} with nothing to repeat")
        return [_Literal(char)]

    def _escape(self) -> _Literal | _Chars:
        char = self._next()
        if char.lower() in _CATEGORIES:
            test = _CATEGORIES[char.lower()]
            return _Chars(tuple(c for c in _PRINTABLE if test(c) != char.isupper()))
        if char.isalnum():
            self._unread(f"\\{char}")
        return _Literal(char)

    def _quantifier(self) -> tuple[int, int] | None:
        counts: tuple[int, int] | None = None
        if self._take("?"):
            counts = (0, 1)
        elif self._take("*"):
            counts = (0, _UNBOUNDED)
        elif self._take("+"):
            counts = (1, _UNBOUNDED)
        elif found := _QUANTIFIER.match(self.text, self.at):
            low, comma, high = found.groups()
            if low or high:
                self.at = found.end()
                counts = (int(low or 0), int(high) if high else _UNBOUNDED if comma else int(low))
        if counts is not None:
            self._take("?")  # lazy: the same strings
        return counts

    def _class(self) -> _Node:
        negate = self._take("^")
        chosen: set[str] = set()
        elements, single = 0, ""
        while elements == 0 or not self._take("]"):  # a ] first is one of the class
            elements += 1
            first = self._class_char()
            if isinstance(first, _Chars):
                chosen.update(first.members)
            elif self.text.startswith("-", self.at) and not self.text.startswith("-]", self.at):
                self.at += 1
                last = self._class_char()
                if isinstance(last, _Chars):
                    self._unread("a range that ends in a class")
                chosen.update(chr(code) for code in range(ord(first), ord(last) + 1))
            else:
                chosen.add(first)
                single = first
        if not negate and elements == 1 and single:
            return _Literal(single)  # [a] is a, as re reads it
        return _Chars(tuple(c for c in _PRINTABLE if (c in chosen) != negate))

    def _class_char(self) -> str | _Chars:
        char = self._next()
        if char != "\\":
            return char
        escaped = self._escape()
        return escaped.char if isinstance(escaped, _Literal) else escaped


def _alternatives(items: Items) -> list[Items]:
    """The alternatives of a pattern that is one `|`; else the pattern itself."""
    if len(items) == 1 and isinstance(items[0], _Branch):
        return [list(branch) for branch in items[0].alternatives]
    return [list(items)]


def _lengths(items: Items, cap: int) -> frozenset[int]:
    """The lengths of the strings `items` match, up to `cap`."""
    reach = frozenset({0})
    for item in items:
        reach = _plus(reach, _item_lengths(item, cap), cap)
    return reach


def _plus(left: frozenset[int], right: frozenset[int], cap: int) -> frozenset[int]:
    return frozenset(a + b for a in left for b in right if a + b <= cap)


def _item_lengths(item: _Node, cap: int) -> frozenset[int]:
    if isinstance(item, _Literal | _Chars):
        return frozenset({1})
    if isinstance(item, _Branch):
        return frozenset().union(*(_lengths(branch, cap) for branch in item.alternatives))
    return frozenset().union(*(reach for _, reach in _repeats(item, cap)))


def _repeats(item: _Repeat, cap: int) -> Iterator[tuple[int, frozenset[int]]]:
    """(k, the lengths of k copies of the item's items) for each count k it allows, within `cap`."""
    one = _lengths(item.items, cap)
    reach = frozenset({0})
    for count in range(min(item.high, cap) + 1):
        if count >= item.low:
            yield count, reach
        reach = _plus(reach, one, cap)
        if not reach:
            return


class _Builder:
    """Writes a string of a given length that a parsed pattern matches, left to right."""

    def __init__(self, preferred: str, rng: random.Random) -> None:
        self.preferred = preferred
        self.rng = rng
        self.out: list[str] = []

    def build(self, items: Items, length: int) -> str:
        self._sequence(items, length, cap=length)
        return "".join(self.out)

    def _sequence(self, items: Items, length: int, cap: int) -> None:
        # The lengths each suffix of `items` can take, to choose each item's length so the rest can fit.
        suffixes = [frozenset({0})]
        for item in reversed(items):
            suffixes.insert(0, _plus(_item_lengths(item, cap), suffixes[0], cap))
        left = length
        for index, item in enumerate(items):
            fits = [n for n in _item_lengths(item, cap) if left - n in suffixes[index + 1]]
            chosen = max(fits)  # the earlier items take the most: 12 integer digits before the decimals
            self._item(item, chosen, cap)
            left -= chosen

    def _item(self, item: _Node, length: int, cap: int) -> None:
        if isinstance(item, _Literal):
            self.out.append(item.char)
        elif isinstance(item, _Chars):
            self._pick(item.members)
        elif isinstance(item, _Branch):
            branch = next(b for b in item.alternatives if length in _lengths(b, cap))
            self._sequence(branch, length, cap)
        else:  # a repeat: the fewest copies that make the length
            count = next(k for k, reach in _repeats(item, cap) if length in reach)
            self._sequence(list(item.items) * count, length, cap)

    def _pick(self, members: Sequence[str]) -> None:
        position = len(self.out)
        wanted = self.preferred[position : position + 1]
        if wanted and wanted in members:
            self.out.append(wanted)
            return
        usual = [c for c in members if c in _ALNUM] or list(members)
        self.out.append(self.rng.choice(usual))
