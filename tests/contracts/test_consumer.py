"""The consumer side: the reference clients against Pact's mock server, and the pact files of record."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from pact.error import MismatchesError

from mpesa_atm.codes import ResponseCode
from mpesa_atm.contracts import (
    BANK,
    INTERACTIONS,
    IPG,
    ConsumerContractError,
    exercise,
    generate,
    generate_pacts,
    pact_dir,
)
from mpesa_atm.contracts.generate import normalised, pact_file_name, read_pact
from mpesa_atm.contracts.interactions import (
    INSIGHT_REFERENCE,
    WRONG_PASSWORD,
    _redeem,
    redemption_of_a_known_token,
)
from mpesa_atm.mocks.values import bank_date_time, new_bank_transaction_ref, new_insight_reference
from mpesa_atm.spec import OPERATION_PATHS

PAIRS = [(BANK, IPG), (IPG, BANK)]


def committed(consumer: str, provider: str) -> dict:
    return read_pact(pact_dir() / pact_file_name(consumer, provider))


def all_interactions() -> list[tuple[str, dict]]:
    """(provider, interaction) of every committed pact."""
    return [
        (provider, interaction)
        for consumer, provider in PAIRS
        for interaction in committed(consumer, provider)["interactions"]
    ]


@pytest.mark.network  # Pact's mock server listens on loopback
@pytest.mark.parametrize("interaction", INTERACTIONS, ids=[i.name for i in INTERACTIONS])
def test_reference_client_makes_its_request_and_reads_the_promised_answer(interaction):
    exercise(interaction)


@pytest.mark.network  # Pact's mock server listens on loopback
def test_regenerating_the_pacts_leaves_the_committed_files_unchanged(tmp_path):
    written = generate_pacts(tmp_path)
    assert sorted(path.name for path in written) == sorted(path.name for path in pact_dir().glob("*.json"))
    for path in written:
        fresh, of_record = read_pact(path), read_pact(pact_dir() / path.name)
        assert normalised(fresh) == normalised(of_record), (
            f"{path.name} changed: run `python -m mpesa_atm.contracts` and commit the pact files"
        )


@pytest.mark.network  # Pact's mock server listens on loopback
def test_the_command_writes_where_out_says(tmp_path, capsys):
    assert generate.main(["--out", str(tmp_path / "pacts")]) == 0
    written = sorted(path.name for path in (tmp_path / "pacts").glob("*.json"))
    assert written == sorted(path.name for path in pact_dir().glob("*.json"))
    assert capsys.readouterr().out.split() == [str(tmp_path / "pacts" / name) for name in written]


def test_the_checkout_is_where_the_pact_files_of_record_are():
    # The suite runs from a checkout (pip install -e .) or against an installed copy (tox).
    checkout = generate.checkout_pact_dir()
    if checkout is not None:
        assert checkout == pact_dir()
        assert (checkout.parent.parent / "openapi" / "ipg.yaml").is_file()


def test_an_installed_copy_asks_for_out_instead_of_writing_into_itself(monkeypatch, capsys):
    monkeypatch.setattr(generate, "checkout_pact_dir", lambda: None)
    before = {path: path.read_bytes() for path in pact_dir().glob("*.json")}
    with pytest.raises(SystemExit) as stopped:
        generate.main([])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"it would write into {pact_dir()}" in err
    assert "give --out DIR" in err
    assert {path: path.read_bytes() for path in pact_dir().glob("*.json")} == before


def test_normalising_ignores_only_the_pact_library_versions():
    pact = committed(BANK, IPG)
    other_library = {**pact, "metadata": {**pact["metadata"], "pactRust": {"ffi": "9.9.9"}}}
    assert normalised(other_library) == normalised(pact)
    changed = json.loads(json.dumps(pact))
    changed["interactions"][0]["response"]["body"]["content"]["output_ResponseCode"] = "-1"
    assert normalised(changed) != normalised(pact)


@pytest.mark.network  # Pact's mock server listens on loopback
def test_a_client_that_gets_another_code_than_the_contract_promises_fails_the_consumer_test():
    promised_success_but_sends_a_duplicate = dataclasses.replace(
        next(i for i in INTERACTIONS if i.name == "repeated_redemption"), expected_code=ResponseCode.SUCCESS
    )
    with pytest.raises(ConsumerContractError, match="received '-3', documented '0'"):
        exercise(promised_success_but_sends_a_duplicate)


@pytest.mark.network  # Pact's mock server listens on loopback
def test_a_client_request_that_is_not_the_contracts_fails_the_consumer_test():
    sends_another_password = dataclasses.replace(
        next(i for i in INTERACTIONS if i.define is redemption_of_a_known_token),
        call=_redeem(password=WRONG_PASSWORD),
    )
    with pytest.raises(MismatchesError, match="not-the-password"):
        exercise(sends_another_password)


def test_the_contracts_cover_the_outcomes_each_consumer_relies_on():
    covered = {
        (
            provider,
            interaction["request"]["path"],
            interaction["response"]["body"]["content"]["output_ResponseCode"],
        )
        for provider, interaction in all_interactions()
    }
    redemption, reversal = OPERATION_PATHS["token_redemption"], OPERATION_PATHS["token_reversal"]
    generation = OPERATION_PATHS["token_generation"]
    assert covered == {
        *((IPG, redemption, code) for code in ("0", "-3", "-4", "-5", "-9")),
        (IPG, reversal, "0"),
        (IPG, reversal, "-3"),
        (BANK, generation, "0"),
        (BANK, generation, "-3"),
    }


def test_every_interaction_names_its_provider_states_with_parameters():
    for _, interaction in all_interactions():
        assert interaction["providerStates"], interaction["description"]
        for state in interaction["providerStates"]:
            assert state.get("params"), (interaction["description"], state["name"])


def test_the_pacts_are_specification_v4():
    for consumer, provider in PAIRS:
        assert committed(consumer, provider)["metadata"]["pactSpecification"]["version"] == "4.0"


def rules(interaction: dict) -> dict[str, list[dict]]:
    return {path: rule["matchers"] for path, rule in interaction["response"]["matchingRules"]["body"].items()}


def regex_of(interaction: dict, field: str) -> str:
    (matcher,) = rules(interaction)[f"$.{field}"]
    assert matcher["match"] == "regex"
    return matcher["regex"]


def test_references_and_date_times_are_matched_by_format_not_by_value():
    for provider, interaction in all_interactions():
        content = interaction["response"]["body"]["content"]
        assert rules(interaction)["$.output_ResponseDesc"] == [{"match": "type"}]
        if provider == IPG:
            assert regex_of(interaction, "output_InsightReference") == INSIGHT_REFERENCE
            # The bank's own reference comes back as it sent it: a value, not a matcher.
            assert "$.output_ThirdPartyReference" not in rules(interaction)
            assert content["output_ThirdPartyReference"] == "71c6d1f93910052de053"
        else:
            for field in ("output_BankTransactionRef", "output_BankDateTime"):
                assert re.search(regex_of(interaction, field), content[field]), field
        assert "output_ResponseCode" not in str(rules(interaction))


def test_the_format_matchers_accept_what_providers_send_and_refuse_what_they_must_not():
    generation = committed(IPG, BANK)["interactions"][0]
    reference, date_time = (
        regex_of(generation, "output_BankTransactionRef"),
        regex_of(generation, "output_BankDateTime"),
    )
    assert re.search(reference, new_bank_transaction_ref())
    assert not re.search(reference, "12345678123412341234123456789ab")  # 31 characters
    assert not re.search(reference, "12345678 23412341234123456789abc")
    from datetime import UTC, datetime

    assert re.search(date_time, bank_date_time(datetime(2019, 6, 11, 22, 32, 10, tzinfo=UTC), "UTC"))
    for wrong in ("2019-06-11 22:32:10", "20191311 223210", "20190611 243210", "20190611223210"):
        assert not re.search(date_time, wrong), wrong
    assert re.search(INSIGHT_REFERENCE, new_insight_reference())
    assert re.search(INSIGHT_REFERENCE, "12sdxq3634dadsas242")
    assert not re.search(INSIGHT_REFERENCE, "")
    assert not re.search(INSIGHT_REFERENCE, "x" * 33)
