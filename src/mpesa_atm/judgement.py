"""How a partner is judged, by `fuzz` and `verify` alike: one table of rules. Where the document
speaks, a break is a failure and the rule quotes the document's section; where it is silent, a
difference from the harness's reading is a warning and the rule names its row of docs/spec-notes.md
(rows 21-26 say how each silent point is judged). A third kind of rule is a bound the operator of a
campaign sets (`--max-response-time`): the document says nothing of it, and breaking it is a failure
because the operator asked for it.

A finding's "Documented:" line ends with `RULES[name].source`, so that a bank engineer can tell the
document's words from the harness's choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["FAILURE", "RULES", "SPEC_NOTES", "WARNING", "Rule", "Severity", "documented"]

Severity = Literal["failure", "warning"]
# A failure: the partner breaks the document. A warning: the partner reads a point the document leaves
# open otherwise than the harness does (docs/spec-notes.md): worth a look, not a broken contract.
FAILURE: Final = "failure"
WARNING: Final = "warning"

SPEC_NOTES = "docs/spec-notes.md"


@dataclass(frozen=True)
class Rule:
    """One rule a partner is held to: what it says, how a break of it counts, and where it comes from:
    the document's `section`, the harness's reading of a silent point (`row` of docs/spec-notes.md), or
    a bound the operator gave (`bound`, its flag)."""

    name: str
    says: str
    section: str = ""
    row: int = 0
    bound: str = ""

    def __post_init__(self) -> None:
        if sum(map(bool, (self.section, self.row, self.bound))) != 1:
            raise ValueError(
                f"rule {self.name}: give one of the document's section, a spec-notes row, an operator's bound"
            )

    @property
    def severity(self) -> Severity:
        return WARNING if self.row else FAILURE

    @property
    def source(self) -> str:
        """Where the rule comes from, as a finding's "Documented:" line ends."""
        if self.section:
            return f"the document, {self.section}"
        if self.bound:
            return f"the operator's bound, {self.bound}"
        return f"the harness's reading, {SPEC_NOTES} row {self.row}"


_RULES: tuple[Rule, ...] = (
    # Where the document speaks: a break is a failure.
    Rule("server_error", "an answer in the envelope, never a server error", "2.1.3, 2.2.3, 3.1.3"),
    Rule(
        "envelope",
        "a JSON object with output_ResponseCode and output_ResponseDesc, strings",
        "2.1.3.1, 2.2.3.1, 3.1.3.1",
    ),
    Rule("mapped_code", "output_ResponseCode is a code of the mapping table", "section 4"),
    Rule("code_description", "output_ResponseDesc is not another code's description", "section 4"),
    Rule(
        "required_output",
        "every output field marked Required is in every answer, a string",
        "2.1.3.1, 2.2.3.1, 3.1.3.1",
    ),
    Rule(
        "required_input",
        "a request without a field marked Required is never answered 0",
        "2.1.2.1, 2.2.2.1, 3.1.2.1",
    ),
    Rule(
        "stated_limit",
        "a reference over the document's Maximum 32 characters is never answered 0",
        "2.1.2.1, 2.2.2.1",
    ),
    Rule("bank_reference", "output_BankTransactionRef has 32 characters", "3.1.3.1"),
    Rule("bank_date_time", "output_BankDateTime is a date and time in YYYYMMDD HH24MISS", "3.1.3.1"),
    Rule(
        "optional_input",
        "a request without the Optional input_AccountNumber is served as one with it",
        "3.1.2.1",
    ),
    Rule("echo", "output_ThirdPartyReference is the request's input_ThirdPartyReference", "2.1.3.1, 2.2.3.1"),
    Rule(
        "duplicate",
        "a repeat of a request answered 0 is -3 with the first answer's reference",
        "2.1, 2.2, 3.1",
    ),
    Rule("credentials", "a wrong password is -4, a shortcode not linked to the username -5", "section 4"),
    Rule("unknown_token", "a token nobody generated is never paid or reversed (-9)", "2.1.2.1, section 4"),
    Rule("token_details", "a redemption's MSISDN, amount and currency are the token generation's", "2.1.2.1"),
    Rule(
        "token_redeemable",
        "a token generated within 2 days is paid (0) to its first redemption with its own details",
        "2.1.2.1, section 4",
    ),
    Rule("token_once", "a token is paid at most once and reversed at most once", "2.1, 2.2"),
    Rule("token_window", "a token generated more than 2 days ago is -9, never paid", "section 4"),
    Rule("reversal_transaction", "a reversal quotes the token's original G2 TransactionID", "2.2.2.1"),
    # Where the document is silent: a difference from the harness's reading is a warning.
    Rule("http_status", "the HTTP statuses of outcomes and refusals", row=21),
    Rule("content_type", "answers labelled application/json", row=18),
    Rule("formats", "the formats of the fields, the unknown fields, the request's Content-Type", row=22),
    Rule("refusal_references", "the references and date-time of a refusal", row=23),
    Rule("rule_order", "which check a partner makes first", row=24),
    Rule("extra_output", "output fields the document does not list", row=25),
    Rule("reversible_tokens", "which tokens may be reversed: redeemed, unredeemed or both", row=26),
    # Where the operator set a bound: a break is a failure, since the operator asked for it.
    Rule("response_time", "an answer within the time the operator allows", bound="--max-response-time"),
)
RULES: dict[str, Rule] = {rule.name: rule for rule in _RULES}


def documented(rule: str, text: str) -> str:
    """`text` (what the rule wants, in a finding's words) with where it comes from: the document's
    section or the harness's reading (`documented("mapped_code", "one of 0, -1, ...")`)."""
    return f"{text} ({RULES[rule].source})"
