"""The method registry and the CLI's list of method names, read from file names (for --help
without numba), agree."""

from __future__ import annotations

from segaudit.cli._options import method_names
from segaudit.methods import METHODS, REGISTRY


def test_method_names_from_files_are_the_registry():
    # --method's help and choices come from the file names: each module is named after its method.
    assert sorted(method_names()) == sorted(METHODS) == sorted(REGISTRY)
