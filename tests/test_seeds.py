"""The many-seed tests' seeds: four a Python, other ones on each, or the variable's."""

import sys
from types import SimpleNamespace

from tests.fixtures import seeds


def test_each_python_runs_four_seeds_of_its_own(monkeypatch):
    monkeypatch.delenv(seeds.VARIABLE, raising=False)
    start = 4 * (sys.version_info.minor - 11)
    assert seeds.seeds() == range(start, start + 4)
    monkeypatch.setattr(sys, "version_info", SimpleNamespace(major=3, minor=13))
    assert seeds.seeds() == range(8, 12)


def test_the_variable_chooses_the_seeds(monkeypatch):
    monkeypatch.setenv(seeds.VARIABLE, "0-29")
    assert seeds.seeds() == range(30)
    monkeypatch.setenv(seeds.VARIABLE, "7")
    assert seeds.seeds() == range(7, 8)
