"""The layers contract (pyproject.toml, import-linter): it holds on the tree, and it breaks when a lower layer imports
a higher one, as `make lint` and `make test` run it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Every test here runs lint-imports as a process.
pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contract over the packages found in `tree`."""
    return subprocess.run(
        [str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        # Wide enough that no import chain is wrapped in the report.
        env={**os.environ, "COLUMNS": "300"},
    )


def _copy_with(tmp_path: Path, importer: str, lines: str) -> Path:
    """A copy of the packages in which `importer` ends with `lines`."""
    for package in ("reactivation", "celery_app"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / importer).open("a", encoding="utf-8") as source:
        source.write("\n" + lines + "\n")
    return tmp_path


def test_the_tree_keeps_its_layers() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        # The ground floor imports the flow above it.
        ("reactivation/core/phones.py", "reactivation.flow.pipeline"),
        # Storage imports a domain.
        ("reactivation/storage/history.py", "reactivation.timing.steps"),
        # Two sibling domains are independent of each other.
        ("reactivation/messaging/composing.py", "reactivation.delivery.contract"),
        ("reactivation/replies/handler.py", "reactivation.outcomes.attribution"),
        # The flow builds no Runtime: it takes one.
        ("reactivation/flow/sweeps.py", "reactivation.runtime"),
        # The Celery app does not reach up into the command line.
        ("celery_app/tasks.py", "reactivation.tools.cli"),
    ],
)
def test_an_import_up_the_layers_breaks_the_contract(tmp_path: Path, importer: str, imported: str) -> None:
    # Given a copy of the tree in which a module imports one from a layer above its own (or a sibling)
    tree = _copy_with(tmp_path, importer, f"import {imported}  # noqa: E402, F401")
    # When the contract is checked
    result = _lint(tree)
    # Then it fails and names the import
    assert result.returncode == 1, result.stdout
    assert "0 kept, 1 broken" in result.stdout
    assert f"{importer.removesuffix('.py').replace('/', '.')} -> {imported}" in result.stdout


def test_a_runtime_imported_for_annotations_only_keeps_the_contract(tmp_path: Path) -> None:
    # A domain function that takes a Runtime names its type without importing it at run time.
    tree = _copy_with(
        tmp_path,
        "reactivation/flow/sweeps.py",
        "from typing import TYPE_CHECKING  # noqa: E402\n\n"
        "if TYPE_CHECKING:\n    from reactivation.runtime import Runtime",
    )
    result = _lint(tree)
    assert result.returncode == 0, result.stdout
