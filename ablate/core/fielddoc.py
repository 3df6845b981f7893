"""One-line help for config fields, read from the config class's own source (for `ablate list`).

A field's help is its trailing `# comment`, else the comment lines right above it, else an
`name: text` line of the class docstring. Sources that cannot be read give no help.
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import textwrap
import tokenize

_DOC_FIELD = re.compile(r"^\s*(\w+)(?:\s*\([^)]*\))?:\s+(.+)$")  # Google style `name (type): text`


def _comments_by_line(src: str) -> dict[int, str]:
    tokens = tokenize.generate_tokens(io.StringIO(src).readline)
    return {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}


def _above(lines: list[str], comments: dict[int, str], lineno: int) -> str:
    """The comment-only lines directly above line `lineno` (1-based), joined."""
    block: list[str] = []
    n = lineno - 1
    while n >= 1 and lines[n - 1].lstrip().startswith("#"):
        block.insert(0, comments.get(n, ""))
        n -= 1
    return " ".join(b for b in block if b)


def field_help(cls: type) -> dict[str, str]:
    """Field name -> its one-line description, for dataclass `cls`."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return {}
    node = tree.body[0]
    if not isinstance(node, ast.ClassDef):
        return {}
    comments, lines = _comments_by_line(src), src.splitlines()
    out: dict[str, str] = {}
    for line in (inspect.getdoc(cls) or "").splitlines():
        if m := _DOC_FIELD.match(line):
            out[m.group(1)] = m.group(2).strip()
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            text = comments.get(stmt.lineno) or _above(lines, comments, stmt.lineno)
            if text:
                out[stmt.target.id] = text
    return out
