"""A code-aware tokenizer: identifiers, numbers, string literals, operators, and line structure.

Horizontal whitespace is dropped; a line break with the indentation that follows it is one
token (``"\\n"`` plus the indentation width), and runs of blank lines collapse into it. So
``x  =  1`` and ``x = 1`` tokenize alike, while a change of nesting does not.

    >>> tokenize("def f(a):\\n    return a**2\\n")
    ['def', 'f', '(', 'a', ')', ':', '\\n4', 'return', 'a', '**', '2', '\\n0']
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""
      \n[ \t]*(?:\n[ \t]*)*                       # line break(s) + the indentation that follows
    | [rbuRBUfF]{0,2}(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?''')  # triple-quoted strings
    | [rbuRBUfF]{0,2}(?:"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')  # one-line strings
    | [A-Za-z_][A-Za-z_0-9]*                      # identifiers and keywords
    | 0[xXoObB][0-9a-fA-F_]+ | \d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)? | \.\d+  # numbers
    | \*\*=? | //=? | ->  | := | <<=? | >>=? | \.\.\. | [=!<>+\-*/%&|^@]=?  # operators
    | ```                                          # markdown fences
    | \S                                           # any other character
    """,
    re.VERBOSE,
)


def _line(tok: str) -> str:
    indent = tok[tok.rfind("\n") + 1 :]
    return f"\n{len(indent.expandtabs(4))}"


def tokenize(text: str) -> list[str]:
    """Split ``text`` into code-aware tokens (see the module docstring)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [_line(t) if t[0] == "\n" else t for t in _TOKEN.findall(text)]
