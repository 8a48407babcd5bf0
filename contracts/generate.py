"""The consumer side: plays each interaction's reference-client call against Pact's mock server and
writes the pact files. `python -m mpesa_atm.contracts` rewrites the committed ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpesa_atm.clients import IpgResult
from mpesa_atm.contracts.interactions import INTERACTIONS, SAMPLE, Interaction, Result
from mpesa_atm.errors import ConsumerContractError
from mpesa_atm.spec import load_spec

if TYPE_CHECKING:
    from pact import Pact

__all__ = [
    "ConsumerContractError",
    "exercise",
    "generate_pacts",
    "normalised",
    "pact_dir",
    "pact_file_name",
]


def pact_dir() -> Path:
    """The pact files of record: `contracts/pacts/` of the checkout, installed with the package."""
    return Path(str(resources.files("mpesa_atm.contracts") / "pacts"))


def checkout_pact_dir() -> Path | None:
    """`contracts/pacts/` when this package runs from a checkout (an editable install), else None:
    a wheel's copy in site-packages is not where pact files of record are written."""
    folder = pact_dir()
    root = folder.parent.parent
    if (root / "pyproject.toml").is_file() and (root / "openapi").is_dir():
        return folder
    return None


def pact_file_name(consumer: str, provider: str) -> str:
    """The name Pact gives the file of a consumer-provider pair."""
    return f"{consumer}-{provider}.json"


def check(interaction: Interaction, result: Result) -> list[str]:
    """What is wrong with the result the reference client made of the contract's answer."""
    problems = []
    if result.response_code != interaction.expected_code:
        problems.append(
            f"response_code: received {result.response_code!r},"
            f" documented {interaction.expected_code.value!r}"
        )
    if result.code is None:
        problems.append(f"code: {result.response_code!r} is not in the mapping table")
    if not result.description:
        problems.append("description: empty")
    if isinstance(result, IpgResult):
        if not result.insight_reference:
            problems.append("insight_reference: empty")
        if result.third_party_reference != SAMPLE["third_party_reference"]:
            problems.append(f"third_party_reference: received {result.third_party_reference!r}")
    else:
        if len(result.bank_transaction_ref) != 32:
            problems.append(f"bank_transaction_ref: {result.bank_transaction_ref!r} is not 32 characters")
        date_time = load_spec("common.yaml")["components"]["schemas"]["BankDateTime"]["pattern"]
        if not re.search(date_time, result.bank_date_time):
            problems.append(f"bank_date_time: {result.bank_date_time!r} is not YYYYMMDD HH24MISS")
    return problems


def exercise(interaction: Interaction) -> Pact:
    """The interaction on a Pact of its own, after its reference client made its request to Pact's mock
    server and made sense of the answer (else ConsumerContractError, or Pact's MismatchesError when
    the request is not the contract's)."""
    os.environ["PACT_DO_NOT_TRACK"] = "true"
    from pact import Pact

    pact = Pact(interaction.consumer, interaction.provider).with_specification("V4")
    interaction.define(pact)
    with pact.serve(addr="127.0.0.1") as server:
        result = asyncio.run(interaction.call(str(server.url)))
    problems = check(interaction, result)
    if problems:
        raise ConsumerContractError(f"{interaction.name}: " + "; ".join(problems))
    return pact


def generate_pacts(directory: Path | str, interactions: Iterable[Interaction] = INTERACTIONS) -> list[Path]:
    """Exercises every interaction and writes the pact files into `directory`, replacing any there."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()
    for interaction in interactions:
        path = directory / pact_file_name(interaction.consumer, interaction.provider)
        if path not in written:
            # Pact merges into an existing file: start each pair's file afresh.
            path.unlink(missing_ok=True)
            written.add(path)
        exercise(interaction).write_file(directory, overwrite=False)
    return sorted(written)


def normalised(pact: dict[str, Any]) -> dict[str, Any]:
    """A pact without what changes with the Pact library rather than with the contract: the versions
    of the Pact core that wrote it (metadata.pactRust)."""
    metadata = {key: value for key, value in pact.get("metadata", {}).items() if key != "pactRust"}
    return {**pact, "metadata": metadata}


def read_pact(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpesa_atm.contracts",
        description="Run the consumer side of the contracts and (re)write the pact files.",
    )
    parser.add_argument(
        "--out", metavar="DIR", type=Path, help="where to write (default: contracts/pacts/ of the checkout)"
    )
    args = parser.parse_args(argv)
    target: Path | None = args.out or checkout_pact_dir()
    if target is None:
        parser.exit(
            2,
            f"{parser.prog}: error: the package runs from an installed copy, not a checkout; it would"
            f" write into {pact_dir()}: give --out DIR (e.g. contracts/pacts of your checkout)\n",
        )
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        # Written elsewhere first: a failing interaction leaves the files of record as they were.
        for path in generate_pacts(scratch):
            shutil.copyfile(path, target / path.name)
            print(target / path.name)
    return 0
