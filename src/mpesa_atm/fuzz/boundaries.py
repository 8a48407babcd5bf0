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

import importlib
import random
import re
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any

from mpesa_atm.fuzz.cases import draft_from
from mpesa_atm.fuzz.checks import CheckInfo, probing
from mpesa_atm.fuzz.realistic import realistic_case
from mpesa_atm.fuzz.unit import Unit
from mpesa_atm.fuzz.violations import STATED_LIMITS
from mpesa_atm.spec import operation_definition, resolved

__all__ = ["CREDENTIAL_FIELDS", "OVER_THE_LIMIT", "field_edges", "over_the_limit", "request_fields", "run"]

OVER_THE_LIMIT = "over the limit"  # the kind of the cases one character over the document's limit

# The bank's credentials at the iPG: the campaign's own, never a boundary value.
CREDENTIAL_FIELDS = frozenset({"input_Username", "input_Password", "input_BankShortcode"})
# The checks that send requests of their own: an enumeration's values (154 currencies) are sent with
# the checks of the answer only, so that they cost one request each.
_SENDING = frozenset(
    {"replay_is_duplicate", "wrong_password_rejected", "other_shortcode_rejected", "optional_field_left_out"}
)

# The parser behind `re` (Hypothesis's from_regex reads patterns through it too).
_parser: Any = importlib.import_module("re._parser")
_sre: Any = importlib.import_module("re._constants")
_PRINTABLE = [chr(code) for code in range(0x20, 0x7F)]
_ALNUM = frozenset(string.ascii_letters + string.digits)


def run(unit: Unit, operation_id: str) -> None:
    """Sends each boundary value of each field of `operation_id` in a realistic case of its own."""
    campaign = unit.campaign
    rng = random.Random(f"{campaign.seed}/{unit.name}/boundaries")
    answer_only = tuple(info for info in campaign.checks if info.name not in _SENDING)
    realistic = draft_from(rng, campaign.currencies).body(
        operation_id, unit.case_fresh, campaign.target.credentials
    )
    for field, schema in request_fields(operation_id).items():
        if field in CREDENTIAL_FIELDS:
            continue
        preferred = realistic.get(field) or str(schema.get("example", ""))
        for value in field_edges(schema, preferred, rng):
            if unit.stopped:
                return
            unit.history.clear()
            draft = draft_from(rng, campaign.currencies)
            case = realistic_case(unit, operation_id, draft, overrides={field: value})
            if "enum" in schema:
                _answer_only(unit, case, answer_only)
            else:
                unit.try_case("boundary", case)
    for field, limit in STATED_LIMITS.items():
        if field not in request_fields(operation_id) or unit.stopped:
            continue
        unit.history.clear()
        value = over_the_limit(str(realistic.get(field, "")), limit, rng)
        draft = draft_from(rng, campaign.currencies)
        unit.try_case(OVER_THE_LIMIT, realistic_case(unit, operation_id, draft, overrides={field: value}))


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
    parsed = list(_parser.parse(pattern)) if pattern else [(_sre.MAX_REPEAT, (0, longest, _ANY_ALNUM))]
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


# A field without a pattern: letters and digits.
_ANY_ALNUM = [(_sre.IN, [(_sre.RANGE, (ord(a), ord(b))) for a, b in ("09", "AZ", "az")])]

Items = Sequence[tuple[Any, Any]]


def _alternatives(items: Items) -> list[Items]:
    """The alternatives of a pattern that is one `|` between anchors; else the pattern itself."""
    inner = [(op, av) for op, av in items if op is not _sre.AT]
    if len(inner) == 1 and inner[0][0] is _sre.BRANCH:
        return [list(branch) for branch in inner[0][1][1]]
    return [list(items)]


def _lengths(items: Items, cap: int) -> frozenset[int]:
    """The lengths of the strings `items` match, up to `cap`."""
    reach = frozenset({0})
    for op, av in items:
        reach = _plus(reach, _item_lengths(op, av, cap), cap)
    return reach


def _plus(left: frozenset[int], right: frozenset[int], cap: int) -> frozenset[int]:
    return frozenset(a + b for a in left for b in right if a + b <= cap)


def _item_lengths(op: Any, av: Any, cap: int) -> frozenset[int]:
    if op in (_sre.LITERAL, _sre.NOT_LITERAL, _sre.IN, _sre.ANY):
        return frozenset({1})
    if op is _sre.AT:
        return frozenset({0})
    if op is _sre.SUBPATTERN:
        return _lengths(list(av[-1]), cap)
    if op is _sre.BRANCH:
        return frozenset().union(*(_lengths(list(branch), cap) for branch in av[1]))
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
        low, high, sub = av
        return frozenset().union(*(reach for _, reach in _repeats(low, high, list(sub), cap)))
    raise ValueError(f"a pattern element this does not read: {op} {av!r}")


def _repeats(low: int, high: int, sub: Items, cap: int) -> Iterator[tuple[int, frozenset[int]]]:
    """(k, the lengths of k copies of `sub`) for each count k from `low` to `high` within `cap`."""
    one = _lengths(sub, cap)
    reach = frozenset({0})
    for count in range(min(high, cap) + 1):
        if count >= low:
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
        for op, av in reversed(items):
            suffixes.insert(0, _plus(_item_lengths(op, av, cap), suffixes[0], cap))
        left = length
        for index, (op, av) in enumerate(items):
            fits = [n for n in _item_lengths(op, av, cap) if left - n in suffixes[index + 1]]
            chosen = max(fits)  # the earlier items take the most: 12 integer digits before the decimals
            self._item(op, av, chosen, cap)
            left -= chosen

    def _item(self, op: Any, av: Any, length: int, cap: int) -> None:
        if op is _sre.AT:
            return
        if op is _sre.LITERAL:
            self.out.append(chr(av))
        elif op is _sre.NOT_LITERAL:
            self._pick([c for c in _PRINTABLE if c != chr(av)])
        elif op is _sre.ANY:
            self._pick(_PRINTABLE)
        elif op is _sre.IN:
            self._pick(_members(av))
        elif op is _sre.SUBPATTERN:
            self._sequence(list(av[-1]), length, cap)
        elif op is _sre.BRANCH:
            branch = next(list(b) for b in av[1] if length in _lengths(list(b), cap))
            self._sequence(branch, length, cap)
        else:  # a repeat: the fewest copies that make the length
            low, high, sub = av
            count = next(k for k, reach in _repeats(low, high, list(sub), cap) if length in reach)
            self._sequence(list(sub) * count, length, cap)

    def _pick(self, members: Sequence[str]) -> None:
        position = len(self.out)
        wanted = self.preferred[position : position + 1]
        if wanted and wanted in members:
            self.out.append(wanted)
            return
        usual = [c for c in members if c in _ALNUM] or list(members)
        self.out.append(self.rng.choice(usual))


def _members(items: Any) -> list[str]:
    """The printable ASCII characters a character class `[...]` matches."""
    chosen: set[str] = set()
    negate = False
    tests: dict[Any, Callable[[str], bool]] = {
        _sre.CATEGORY_DIGIT: str.isdigit,
        _sre.CATEGORY_WORD: lambda c: c in _ALNUM or c == "_",
        _sre.CATEGORY_SPACE: str.isspace,
    }
    for op, av in items:
        if op is _sre.NEGATE:
            negate = True
        elif op is _sre.LITERAL:
            chosen.add(chr(av))
        elif op is _sre.RANGE:
            chosen.update(chr(code) for code in range(av[0], av[1] + 1))
        elif op is _sre.CATEGORY and av in tests:
            chosen.update(c for c in _PRINTABLE if tests[av](c))
        else:
            raise ValueError(f"a character class element this does not read: {op} {av!r}")
    return [c for c in _PRINTABLE if (c in chosen) != negate]
