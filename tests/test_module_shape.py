"""Every module under bpo/ is at most 400 lines and says what it is for in its docstring's first line.

Issue 19: a file that holds several ideas is cut along its seams; a newcomer reads each
module's job off its first line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bpo"
MAX_LINES = 400
# Files over the limit with a named owner; each entry must go once the file is cut (the test
# fails while a listed file is already within the limit, so none lingers).
OVER_LIMIT: dict[str, str] = {}
MODULES = sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_the_package_is_found():
    assert len(MODULES) > 50 and (PACKAGE / "__init__.py") in MODULES
    assert set(OVER_LIMIT) <= {_rel(p) for p in MODULES}, "OVER_LIMIT names a file that does not exist"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_module_is_at_most_400_lines(path: Path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    if _rel(path) in OVER_LIMIT:
        assert lines > MAX_LINES, f"bpo/{_rel(path)} is {lines} lines now: remove it from OVER_LIMIT"
        pytest.skip(f"bpo/{_rel(path)}: {lines} lines, {OVER_LIMIT[_rel(path)]}")
    assert lines <= MAX_LINES, f"bpo/{_rel(path)} has {lines} lines (> {MAX_LINES}): cut it along a seam"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_module_states_its_job_in_its_first_line(path: Path):
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
    assert doc is not None, f"bpo/{_rel(path)} has no module docstring"
    first = doc.split("\n", 1)[0].strip()
    # a statement, not a stub: several words, starting on the opening line
    assert len(first.split()) >= 3, f"bpo/{_rel(path)}: the docstring's first line {first!r} does not state a job"
