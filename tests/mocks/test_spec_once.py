"""connexion's validation of a document against the OpenAPI schema, once a process per document."""

from __future__ import annotations

import copy
from typing import Any

import connexion.spec
import pytest
from connexion.exceptions import InvalidSpecification
from connexion.spec import Specification

from mpesa_atm.mocks.spec_once import validate_each_document_once
from mpesa_atm.spec import load_spec


def test_a_valid_document_is_validated_once_and_a_broken_one_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    validate_each_document_once()
    validations: list[int] = []
    real = connexion.spec.create_spec_validator

    def counted(spec: Any) -> Any:
        validations.append(1)
        return real(spec)

    monkeypatch.setattr(connexion.spec, "create_spec_validator", counted)
    document = load_spec("bank.yaml")
    document["info"]["title"] += " (a document of this test's own)"
    Specification.from_dict(copy.deepcopy(document))
    Specification.from_dict(copy.deepcopy(document))
    assert len(validations) == 1

    broken = copy.deepcopy(document)
    broken["paths"]["/no-operation"] = {"post": {"responses": "not an object"}}
    for _ in range(2):
        with pytest.raises(InvalidSpecification):
            Specification.from_dict(copy.deepcopy(broken))
    assert len(validations) == 3
