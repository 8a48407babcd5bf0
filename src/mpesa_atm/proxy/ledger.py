"""The proxy's judgement across exchanges: each exchange read with what the store holds of the earlier
ones, by the rules of `fuzz`'s stateful checks (`fuzz.expectations`), and written to the store in the
same transaction, so that every worker of every proxy sharing a `--db` judges by one history.

What is judged (each finding names its rule of `mpesa_atm.judgement.RULES`):

- a repeat of a request answered 0 (`mocks.ipg.duplicate_key_of`; for Token Generation the bank
  mock's repeat, `generation_key`) must be -3 with the first answer's reference (`duplicate`);
- a token is paid at most once and reversed at most once, never paid after its reversal (`token_once`);
- where the store holds the token's generation (a proxy of the bank role on the same store, or this
  ledger shown both roles' exchanges): a redemption paid matches it (`token_details`) and comes
  within `token_ttl` of it (`token_window`), a reversal paid quotes its TransactionID
  (`reversal_transaction`; a bank quoting another is the client's break of that rule), a reference
  that came only in a refused generation is never paid (`unknown_token`), and the first reversal of
  a valid token refused is a warning (`reversible_tokens`, docs/spec-notes.md row 26). A token the
  ledger never saw generated is held to none of these: the proxy saw only part of the traffic.

Real traffic is not a campaign's, so the ledger holds an upstream to what a token's history forbids
(a payment), never to which refusal it chose: a refusal has causes the proxy cannot see (an account's
balance, the order of the partner's checks, docs/spec-notes.md row 24). An answer that says the
request was not looked at (-2, -6, -7, -8: the platform's bad days; -4, -5: the credentials, checked
first) is not judged against the history, nor an exchange without an output_ResponseCode (the
proxy's checks of one answer find that).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final

from mpesa_atm.codes import DESCRIPTIONS, ResponseCode
from mpesa_atm.fuzz.expectations import Action, Expectation, Standing, TokenState, expect
from mpesa_atm.judgement import documented
from mpesa_atm.mocks.records import Generation
from mpesa_atm.mocks.storage import Storage, Transaction
from mpesa_atm.proxy.findings import Exchange, Finding, Side
from mpesa_atm.proxy.seen import DETAILS, GENERATION, REDEMPTION, REFERENCE, REVERSAL, Seen, read, text
from mpesa_atm.settings import Settings

__all__ = ["WINDOW_MARGIN", "Ledger"]

# The refusals of a first reversal that read the document otherwise (row 26): "cannot be reversed".
_REVERSAL_REFUSED: Final = frozenset(
    {ResponseCode.FAILURE.value, ResponseCode.TRANSACTION_DETAILS_NOT_FOUND.value}
)
_SUCCESS: Final = ResponseCode.SUCCESS.value
_DUPLICATE: Final = ResponseCode.DUPLICATE.value
# How near the window's end a redemption is left unjudged by it: the proxy times the token from the
# bank's answer and the redemption from its arrival, the iPG from its own sight of both, which the
# exchanges' durations and a retry or two set apart.
WINDOW_MARGIN: Final = timedelta(minutes=1)
_UNKNOWN_PAID = Expectation(
    not_codes=frozenset({_SUCCESS}),
    rule="unknown_token",
    title="A token nobody generated was paid or reversed",
    text="not 0: the incoming transaction is validated against the token generation transaction; this"
    " input_BankTransactionRef came only in a refused Token Generation, where nothing rests on it, so no"
    " token has it (-9)",
)
_CLIENT_OTHER_TRANSACTION = (
    "input_TransactionID is the original transaction's G2 TransactionID: the one the token was generated with"
)


class Ledger:
    """The judgement across exchanges of one proxy's worker; several, in one or more processes, on
    one store judge alike. `observe` each exchange once, when its answer came (or did not)."""

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings

    async def observe(self, exchange: Exchange) -> tuple[Finding, ...]:
        """The findings of `exchange` read with the earlier ones, after recording what it tells of the
        tokens, in one write transaction of the store's (StoreBusy when the store stays busy: the
        exchange was then neither judged nor recorded, which the caller says)."""
        seen = read(exchange)
        if seen is None:
            return ()
        return await self.storage.in_next_write(functools.partial(self._decide, seen))

    def _decide(self, seen: Seen, tx: Transaction) -> tuple[Finding, ...]:
        """The decision (it may run again in a new transaction: PostgreSQL's, when a concurrent one
        recorded a conflicting row first), so it has no effect but the transaction's writes."""
        if seen.operation == GENERATION:
            return _generation(seen, tx)
        return _payment(seen, tx, self.settings.token_ttl)


# Token Generation (the bank's) --------------------------------------------------------------------


def _generation(seen: Seen, tx: Transaction) -> tuple[Finding, ...]:
    """A repeat is judged against the first answer 0; an answer 0 is recorded as the first, and its
    reference as a token; a refusal's reference as one no token has, unless one has it."""
    if not seen.judged:
        return ()
    first = tx.ledger_first_answer("bank", seen.scope, seen.operation, seen.key)
    findings = _repeat(seen, first.reference, first.exchange_id) if first is not None else ()
    if first is None and seen.code == _SUCCESS:
        tx.ledger_add_answer(
            "bank",
            seen.scope,
            seen.operation,
            seen.key,
            reference=seen.reference,
            exchange_id=seen.exchange.exchange_id,
            at=seen.at,
        )
    if seen.reference and seen.code != _DUPLICATE:  # a -3's reference is an earlier answer's
        fields = seen.fields
        tx.ledger_add_generation(
            Generation(
                bank_transaction_ref=seen.reference,
                generated=seen.code == _SUCCESS,
                transaction_id=fields["input_TransactionID"],
                msisdn=fields["input_CustomerMSISDN"],
                amount=fields["input_Amount"],
                currency=fields["input_Currency"],
                created_at=seen.at,
                exchange_id=seen.exchange.exchange_id,
            )
        )
    return findings


# Token Redemption and Token Reversal (the iPG's) -------------------------------------------------


def _payment(seen: Seen, tx: Transaction, ttl: timedelta) -> tuple[Finding, ...]:
    fields = seen.fields
    reference = fields["input_BankTransactionRef"]
    generation = tx.ledger_generation(reference)
    findings: list[Finding] = []
    generated = generation if generation is not None and generation.generated else None
    other_transaction = (
        seen.operation == REVERSAL
        and generated is not None
        and fields["input_TransactionID"] != generated.transaction_id
    )
    if other_transaction:
        assert generated is not None
        findings.append(
            _finding(
                "reversal_transaction",
                "client",
                "A reversal quotes another input_TransactionID than the token's",
                f"input_TransactionID {_shown(fields['input_TransactionID'])} in a reversal of"
                f" input_BankTransactionRef {_shown(reference)}, generated with input_TransactionID"
                f" {_shown(generated.transaction_id)}",
                documented("reversal_transaction", _CLIENT_OTHER_TRANSACTION),
                (generated.exchange_id, seen.exchange.exchange_id),
            )
        )
    if not seen.judged:
        return tuple(findings)
    first = tx.ledger_first_answer("ipg", seen.scope, seen.operation, seen.key)
    if first is not None:  # a repeat: it changes nothing of the token (as fuzz's replay)
        return (*findings, *_repeat(seen, first.reference, first.exchange_id))
    payments = tx.ledger_payments(seen.scope, reference)
    standing = _standing(generation, seen.at, ttl)
    if standing == "expired" and seen.operation == REVERSAL:
        standing = None  # token_window is a redemption's: a late reversal is no payment
    # Never seen generated, or at the window's edge, it is read as valid: held to what its payments
    # forbid and, when generated, to its details.
    state = TokenState(
        standing=standing or "valid",
        redeemed=payments.redeemed_by is not None,
        reversed=payments.reversed_by is not None,
    )
    action = _action(seen, generated, other_transaction)
    earlier = (
        generation.exchange_id if generation is not None else None,
        payments.redeemed_by,
        payments.reversed_by,
    )
    findings.extend(_against_history(seen, action, state, generated, earlier, within=standing == "valid"))
    if seen.code == _SUCCESS:
        tx.ledger_add_answer(
            "ipg",
            seen.scope,
            seen.operation,
            seen.key,
            reference=seen.reference,
            exchange_id=seen.exchange.exchange_id,
            at=seen.at,
        )
        mine = seen.exchange.exchange_id
        tx.ledger_paid(
            seen.scope,
            reference,
            redeemed_by=mine if seen.operation == REDEMPTION else None,
            reversed_by=mine if seen.operation == REVERSAL else None,
            at=seen.at,
        )
    return tuple(findings)


def _standing(generation: Generation | None, at: float, ttl: timedelta) -> Standing | None:
    """The token's standing as fuzz's expectations read it, where the ledger knows it: "unknown" for a
    reference that came only in a refusal, "valid" or "expired" for a token generated within or past
    the window; None where it does not (never seen generated, or within WINDOW_MARGIN of the end)."""
    if generation is None:
        return None
    if not generation.generated:
        return "unknown"
    age = at - generation.created_at
    if age < (ttl - WINDOW_MARGIN).total_seconds():
        return "valid"
    if age > (ttl + WINDOW_MARGIN).total_seconds():
        return "expired"
    return None


def _action(seen: Seen, generated: Generation | None, other_transaction: bool) -> Action:
    """The exchange as one of fuzz's lifecycle actions: a redemption with one of its details other than
    the generation's, a reversal quoting another TransactionID, or the request with its own details."""
    if seen.operation == REVERSAL:
        return "reverse_other_transaction" if other_transaction else "reverse"
    if generated is not None:
        for field, attribute, action in DETAILS:
            if seen.fields[field] != getattr(generated, attribute):
                return action
    return "redeem"


def _against_history(
    seen: Seen,
    action: Action,
    state: TokenState,
    generated: Generation | None,
    earlier: tuple[str | None, str | None, str | None],
    *,
    within: bool,
) -> tuple[Finding, ...]:
    """The upstream's answer held to what `expect` says of `action` in `state`: a payment the history
    forbids, or (a warning) a valid token's first reversal refused (`within`: the token was generated
    within the window, past any doubt)."""
    code = seen.code
    if state.standing == "unknown":
        expectation: Expectation | None = _UNKNOWN_PAID
    else:
        expectation = expect(action, state)
    if expectation is None or expectation.rule in ("token_redeemable", "stated_limit"):
        return ()  # the first payment is the partner's to refuse; a long reference, one exchange's check
    if expectation.rule == "reversible_tokens":
        # Only where nothing else may be why: a token generated within the window, reversed with its
        # own TransactionID and details, refused as one that cannot be reversed.
        if not within or generated is None or code not in _REVERSAL_REFUSED or seen.differing(generated):
            return ()
    elif code != _SUCCESS or expectation.allows(code):
        return ()
    generation_id, redeemed_by, reversed_by = earlier
    quoted = _quoted(expectation.rule, generation_id, redeemed_by, reversed_by, seen.operation)
    return (
        _finding(
            expectation.rule,
            "upstream",
            expectation.title,
            _received(seen, generated, redeemed_by, reversed_by),
            expectation.documented,
            (*quoted, seen.exchange.exchange_id),
        ),
    )


def _quoted(
    rule: str, generation_id: str | None, redeemed_by: str | None, reversed_by: str | None, operation: str
) -> tuple[str, ...]:
    """The earlier exchanges a finding of `rule` reads, oldest first as far as the rule tells."""
    if rule == "token_once":
        if operation == REVERSAL:
            return tuple(i for i in (reversed_by,) if i)
        return tuple(i for i in (redeemed_by, reversed_by) if i)
    return tuple(i for i in (generation_id,) if i)


def _received(
    seen: Seen, generated: Generation | None, redeemed_by: str | None, reversed_by: str | None
) -> str:
    """The "Received:" text of a finding against the token's history: the answer, to what, after what."""
    fields = seen.fields
    what = "a redemption" if seen.operation == REDEMPTION else "a reversal"
    text = (
        f"{_describe(seen.code, seen.exchange.answer)} to {what} of input_BankTransactionRef"
        f" {_shown(fields['input_BankTransactionRef'])}"
    )
    history = []
    if redeemed_by:
        history.append(f"redeemed (answered 0) in exchange {redeemed_by}")
    if reversed_by:
        history.append(f"reversed (answered 0) in exchange {reversed_by}")
    if generated is not None:
        differing = [
            f"{field} {_shown(seen.fields[field])} where it was generated with {_shown(value)}"
            for field, value in seen.differing(generated)
        ]
        age = seen.at - generated.created_at
        history.append(
            f"generated {_hours(age)} earlier in exchange {generated.exchange_id}"
            + (f", with {'; '.join(differing)}" if differing else "")
        )
    return text + (f", a token {', '.join(history)}" if history else "")


# Repeats ------------------------------------------------------------------------------------------


def _repeat(seen: Seen, first: str | None, first_id: str) -> tuple[Finding, ...]:
    """A repeat of a request the upstream answered 0 (exchange `first_id`, reference `first`): -3 with
    that reference (fuzz's replay_is_duplicate)."""
    key = REFERENCE[seen.exchange.role]
    says = documented(
        "duplicate",
        f"-3 {DESCRIPTIONS[ResponseCode.DUPLICATE]} with the first answer's {key} {_shown(first)}, the"
        " operation's duplicate check",
    )
    ids = (first_id, seen.exchange.exchange_id)
    if seen.code != _DUPLICATE:
        return (
            _finding(
                "duplicate",
                "upstream",
                "A repeat of a request answered 0 is not answered Duplicate",
                f"{_describe(seen.code, seen.exchange.answer)} to a repeat of exchange {first_id}"
                f" (answered 0), with {key} {_shown(seen.reference)}",
                says,
                ids,
                check="replay_is_duplicate",
            ),
        )
    if first is not None and seen.reference != first:
        return (
            _finding(
                "duplicate",
                "upstream",
                f"The Duplicate answer does not carry the first {key}",
                f"{key} {_shown(seen.reference)} in the Duplicate answer to a repeat of exchange {first_id}",
                says,
                ids,
                check="replay_is_duplicate",
            ),
        )
    return ()


# Words --------------------------------------------------------------------------------------------


def _finding(
    rule: str,
    side: Side,
    title: str,
    received: str,
    says: str,
    exchange_ids: tuple[str, ...],
    *,
    check: str = "token_lifecycle",
) -> Finding:
    return Finding(
        rule=rule,
        check=check,
        side=side,
        title=title,
        message=f"Received: {received}\nDocumented: {says}",
        exchange_ids=exchange_ids,
    )


def _shown(value: Any) -> str:
    """A value as a finding quotes it: JSON, as the API writes it ("absent" for no value)."""
    return "absent" if value is None else json.dumps(value, ensure_ascii=False)


def _describe(code: str | None, answer: Mapping[str, Any] | None) -> str:
    description = text(answer, "output_ResponseDesc")
    return _shown(code) + (f" ({description})" if description else "")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{max(seconds, 0):.0f} s"
