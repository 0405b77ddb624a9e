"""CESQL v1 tokens (cesql/CESQLLexer.g4): keywords case-insensitive, whitespace skipped."""

from __future__ import annotations

import re
from dataclasses import dataclass

from outbox.cesql._errors import CesqlParseError

KEYWORDS = frozenset({"AND", "OR", "XOR", "NOT", "LIKE", "EXISTS", "IN", "TRUE", "FALSE"})
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<string>'(?:\\.|''|[^'\\])*'|"(?:\\.|""|[^"\\])*")
  | (?P<word>[0-9]*[A-Za-z_][A-Za-z0-9_]*)
  | (?P<integer>[0-9]+)
  | (?P<op>!=|<>|>=|<=|[()=<>,*/%+-])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str  # "string", "integer", "keyword", "word", "op", "end"
    text: str  # the value: unescaped for strings, upper case for keywords
    position: int


def _unescape(raw: str) -> str:
    quote, body = raw[0], raw[1:-1]
    # `\'` in '…' and `\"` in "…" are the quote; a doubled quote is one; any other `\x` stays as written
    # (LIKE patterns keep their `\%` and `\_`).
    return body.replace("\\" + quote, quote).replace(quote + quote, quote)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise CesqlParseError(f"unexpected character {text[position]!r} at position {position}")
        kind = match.lastgroup
        value = match.group()
        if kind == "string":
            tokens.append(Token("string", _unescape(value), position))
        elif kind == "integer":
            tokens.append(Token("integer", value, position))
        elif kind == "word":
            if value.upper() in KEYWORDS:
                tokens.append(Token("keyword", value.upper(), position))
            else:
                tokens.append(Token("word", value, position))
        elif kind == "op":
            tokens.append(Token("op", value, position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens
