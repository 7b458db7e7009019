"""Reading code out of an answer, without running it: fenced blocks, whether they parse, and
which functions a request asks for.

    >>> [b.lang for b in code_blocks("Here:\\n```python\\ndef f():\\n    return 1\\n```\\n")]
    ['python']
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from dataclasses import dataclass

_FENCE = re.compile(r"^[ \t]*```[ \t]*([^\n`]*)$", re.MULTILINE)
_PY_LABELS = frozenset({"python", "py", "python3", "py3", "python2"})
_JSON_LABELS = frozenset({"json"})
_LOOKS_PY = re.compile(
    r"^[ \t]*(?:def [A-Za-z_]\w*\s*\(|class [A-Za-z_]\w*|import [A-Za-z_]|from [\w.]+ import |"
    r"print\(|if __name__ ==|return\b)",
    re.MULTILINE,
)
_STARTS_PY = re.compile(r"\A\s*(?:def |class |import |from [\w.]+ import |@\w)")
_ASKED = (
    re.compile(r"\bdef\s+([A-Za-z_]\w*)\s*\("),
    re.compile(r"\bfunction\s+(?:named|called)\s+`?([A-Za-z_]\w*)`?"),
)


@dataclass(frozen=True, slots=True)
class CodeBlock:
    """One fenced block (or a whole answer that is bare Python). ``lang`` is lower case, "" if unnamed."""

    lang: str
    body: str
    closed: bool = True

    @property
    def is_python(self) -> bool:
        """Labelled Python, or unlabelled and looking like Python."""
        if self.lang in _PY_LABELS:
            return True
        return self.lang == "" and _LOOKS_PY.search(self.body) is not None


def code_blocks(text: str) -> list[CodeBlock]:
    """The fenced code blocks of a markdown answer, in order; an unclosed last fence runs to
    the end. An answer with no fence that starts like Python is one unlabelled block."""
    fences = list(_FENCE.finditer(text))
    if not fences:
        if _STARTS_PY.match(text):
            return [CodeBlock("", text)]
        return []
    blocks: list[CodeBlock] = []
    i = 0
    while i < len(fences):
        opener = fences[i]
        label = opener.group(1).strip()
        lang = label.split()[0].lower() if label else ""
        start = opener.end() + 1
        if i + 1 < len(fences):
            blocks.append(CodeBlock(lang, text[start : fences[i + 1].start()]))
            i += 2
        else:
            blocks.append(CodeBlock(lang, text[start:], closed=False))
            i += 1
    return blocks


def block_problem(block: CodeBlock) -> str | None:
    """Why a block does not parse as the language it names, or None when it does (or when
    the language is one this module cannot check)."""
    if block.is_python:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes in model output
                ast.parse(block.body)
        except SyntaxError as err:
            what = "python" if block.lang else "unlabelled (python-looking)"
            return f"{what} block does not parse: {err.msg} (line {err.lineno})"
        except (ValueError, RecursionError, MemoryError) as err:
            return f"python block does not parse: {type(err).__name__}"
    elif block.lang in _JSON_LABELS:
        try:
            json.loads(block.body)
        except ValueError as err:
            return f"json block does not parse: {err}"
        except RecursionError:  # nested deeper than Python's stack: a model can be made to write it
            return "json block does not parse: nested too deeply"
    return None


def requested_functions(prompt: str) -> set[str]:
    """Function names a request asks for: ``def NAME(`` in the text, or "a function named NAME"."""
    names: set[str] = set()
    for pattern in _ASKED:
        names.update(pattern.findall(prompt))
    return names
