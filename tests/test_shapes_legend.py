"""The shape legend (docs/design.md#shapes) is the only source of shape letters.

Every tensor-name suffix in the engine, the components and the kernels, and every letter a
module docstring's `Shapes` line introduces, must be a letter of that table, which defines each
letter exactly once.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEGEND = ROOT / "docs" / "design.md"
SCANNED = ("ablate", "components", "kernels")
# A shape-suffixed name: lowercase stem, then `_` and a suffix that starts with a digit or an
# uppercase letter and holds at least one uppercase letter (`x_BTD`, `kv_B1SK`, `toks_1T`).
SUFFIXED = re.compile(r"_*[a-z][a-z0-9_]*?_(?P<suffix>[0-9]*[A-Z][A-Za-z0-9]*)")
VALID_SUFFIX = re.compile(r"[A-Z0-9]+")  # no lowercase inside a suffix: one letter, one dim
LEGEND_ROW = re.compile(r"^\|\s*`?([A-Z])`?\s*\|(.+)\|\s*$")
SHAPES_LINE = re.compile(r"Shapes(?: \(docs/design\.md#shapes\))?:(?P<body>.+?)(?:\n\s*\n|$)", re.S)


def legend_rows(text: str) -> list[tuple[str, str]]:
    """(letter, meaning) rows of the table under `## Shapes`."""
    section = text.split("\n## Shapes\n", 1)[1].split("\n## ", 1)[0]
    return [(m[1], m[2].strip()) for m in map(LEGEND_ROW.match, section.splitlines()) if m]


def suffixes(source: str) -> set[str]:
    """Shape suffixes of the identifiers in Python source (names only, not strings/comments)."""
    out = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and (m := SUFFIXED.fullmatch(tok.string)):
            out.add(m["suffix"])
    return out


def docstring_letters(source: str) -> set[str]:
    """Letters a module docstring's `Shapes (docs/design.md#shapes):` line introduces."""
    doc = ast.get_docstring(ast.parse(source)) or ""
    letters = set()
    for m in SHAPES_LINE.finditer(doc):
        for item in re.split(r"[,;]\s*", m["body"]):
            lead = re.match(r"\s*([A-Z](?:/[A-Z])*)(?=[\s=.]|$)", item)
            if lead:
                letters.update(lead[1].split("/"))
    return letters


def python_files() -> list[Path]:
    return sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py"))


@pytest.fixture(scope="module")
def legend() -> dict[str, str]:
    return dict(legend_rows(LEGEND.read_text()))


def test_legend_defines_each_letter_once() -> None:
    letters = [letter for letter, _ in legend_rows(LEGEND.read_text())]
    assert len(letters) >= 20, "the ## Shapes table was not found or lost rows"
    assert len(letters) == len(set(letters)), f"letters defined twice: {sorted(letters)}"


def test_every_suffix_letter_is_in_the_legend(legend: dict[str, str]) -> None:
    bad = []
    for path in python_files():
        for suffix in suffixes(path.read_text()):
            rel = path.relative_to(ROOT)
            if not VALID_SUFFIX.fullmatch(suffix):
                bad.append(f"{rel}: suffix {suffix!r} has lowercase letters")
            bad += [
                f"{rel}: {suffix!r} uses {c!r}" for c in suffix if c.isupper() and c not in legend
            ]
    assert not bad, "shape letters outside docs/design.md#shapes:\n" + "\n".join(sorted(bad))


def test_docstring_shapes_lines_use_the_legend(legend: dict[str, str]) -> None:
    bad = []
    for path in python_files():
        extra = docstring_letters(path.read_text()) - set(legend)
        bad += [f"{path.relative_to(ROOT)}: Shapes line defines {c!r}" for c in sorted(extra)]
    assert not bad, "letters outside docs/design.md#shapes:\n" + "\n".join(bad)


def test_the_checks_catch_bad_names() -> None:
    assert suffixes("x_BTD = sel_NGe = kv_B1SK = toks_1T = 0\ns = 'y_QQ'  # z_ZZ") == {
        "BTD",
        "NGe",
        "B1SK",
        "1T",
    }
    assert suffixes("BLOCK_M = _MODE_ROW = float8_e4m3fn = pid_m = 0") == set()
    assert not VALID_SUFFIX.fullmatch("NGe")
    source = '"""Doc.\n\nShapes (docs/design.md#shapes): B batch, I/O in/out, N = B*T tokens.\n"""'
    assert docstring_letters(source) == {"B", "I", "O", "N"}
