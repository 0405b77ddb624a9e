"""CESQL v1's grammar (cesql/CESQLParser.g4) by precedence climbing, loosest first:

logic       := comparison ((AND | OR | XOR) logic)?          right-associative, one level
comparison  := additive (('=' | '!=' | '<>' | '<' | '<=' | '>' | '>=') additive)*
additive    := multiplying (('+' | '-') multiplying)*
multiplying := postfix (('*' | '/' | '%') postfix)*
postfix     := unary (NOT? LIKE string | NOT? IN '(' logic (',' logic)* ')')*
unary       := NOT unary | '-' unary | EXISTS identifier | atom
atom        := literal | identifier | function '(' arguments? ')' | '(' logic ')'
"""

from __future__ import annotations

import re

from outbox.cesql._errors import CesqlParseError
from outbox.cesql._functions import lookup
from outbox.cesql._lexer import INT32_MAX, INT32_MIN, Token, tokenize
from outbox.cesql._nodes import (
    Arithmetic,
    Attribute,
    Call,
    Comparison,
    Exists,
    In,
    Like,
    Literal,
    Logic,
    MissingFunction,
    Negate,
    Node,
    Not,
    like_pattern,
)

_IDENTIFIER = re.compile(r"^[a-zA-Z0-9]+$")
_FUNCTION = re.compile(r"^[A-Za-z][A-Za-z_]*$")
_COMPARISONS = ("=", "!=", "<>", "<", "<=", ">", ">=")


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0

    # -- tokens ----------------------------------------------------------------------

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def next(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, kind: str, text: str | None = None) -> bool:
        token = self.token
        return token.kind == kind and (text is None or token.text == text)

    def expect(self, kind: str, text: str, what: str) -> Token:
        if not self.at(kind, text):
            raise self.error(f"expected {what}")
        return self.next()

    def error(self, message: str) -> CesqlParseError:
        token = self.token
        found = "the end of the expression" if token.kind == "end" else repr(token.text)
        return CesqlParseError(f"{message} at position {token.position}, found {found}")

    # -- the grammar -------------------------------------------------------------------

    def parse(self) -> Node:
        if self.at("end"):
            raise self.error("empty expression")
        node = self.logic()
        if not self.at("end"):
            raise self.error("unexpected token")
        return node

    def logic(self) -> Node:
        left = self.comparison()
        if self.token.kind == "keyword" and self.token.text in ("AND", "OR", "XOR"):
            operator = self.next().text
            return Logic(operator, left, self.logic())
        return left

    def comparison(self) -> Node:
        node = self.additive()
        while self.token.kind == "op" and self.token.text in _COMPARISONS:
            operator = self.next().text
            node = Comparison(operator, node, self.additive())
        return node

    def additive(self) -> Node:
        node = self.multiplying()
        while self.token.kind == "op" and self.token.text in ("+", "-"):
            operator = self.next().text
            node = Arithmetic(operator, node, self.multiplying())
        return node

    def multiplying(self) -> Node:
        node = self.postfix()
        while self.token.kind == "op" and self.token.text in ("*", "/", "%"):
            operator = self.next().text
            node = Arithmetic(operator, node, self.postfix())
        return node

    def postfix(self) -> Node:
        node = self.unary()
        while True:
            negated = False
            if self.at("keyword", "NOT") and self.tokens[self.index + 1].kind == "keyword":
                if self.tokens[self.index + 1].text not in ("LIKE", "IN"):
                    return node
                self.next()
                negated = True
            if self.at("keyword", "LIKE"):
                self.next()
                if not self.at("string"):
                    raise self.error("LIKE takes a string literal as its pattern")
                node = Like(node, like_pattern(self.next().text), negated)
            elif self.at("keyword", "IN"):
                self.next()
                node = In(node, self.set_items(), negated)
            elif negated:  # pragma: no cover - guarded above
                raise self.error("expected LIKE or IN after NOT")
            else:
                return node

    def set_items(self) -> tuple[Node, ...]:
        self.expect("op", "(", "'(' to open the set of IN")
        items = [self.logic()]
        while self.at("op", ","):
            self.next()
            items.append(self.logic())
        self.expect("op", ")", "')' to close the set of IN")
        return tuple(items)

    def unary(self) -> Node:
        if self.at("keyword", "NOT"):
            self.next()
            return Not(self.unary())
        if self.at("op", "-") or self.at("op", "+"):
            sign = self.next().text
            if self.at("integer"):  # a signed integer literal: -2147483648 must fit
                return Literal(self.integer(sign + self.next().text))
            if sign == "+":
                raise self.error("'+' is only a sign of an integer literal")
            return Negate(self.unary())
        if self.at("keyword", "EXISTS"):
            self.next()
            if not (self.at("word") and _IDENTIFIER.match(self.token.text)):
                raise self.error("EXISTS takes an attribute name")
            return Exists(self.next().text.lower())
        return self.atom()

    def atom(self) -> Node:
        token = self.token
        if token.kind == "string":
            self.next()
            return Literal(token.text)
        if token.kind == "integer":
            self.next()
            return Literal(self.integer(token.text))
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE"):
            self.next()
            return Literal(token.text == "TRUE")
        if token.kind == "op" and token.text == "(":
            self.next()
            node = self.logic()
            self.expect("op", ")", "')'")
            return node
        if token.kind == "word":
            self.next()
            if self.at("op", "("):
                return self.call(token)
            if not _IDENTIFIER.match(token.text):
                raise CesqlParseError(
                    f"{token.text!r} at position {token.position} is not an attribute name (a-z, 0-9)"
                )
            # Attribute names are lower case (CloudEvents); identifiers, like keywords, are not case-sensitive.
            return Attribute(token.text.lower())
        raise self.error("expected a value, an attribute, a function or '('")

    def call(self, name: Token) -> Node:
        if not _FUNCTION.match(name.text):
            raise CesqlParseError(f"{name.text!r} at position {name.position} is not a function name")
        self.expect("op", "(", "'('")
        arguments: list[Node] = []
        if not self.at("op", ")"):
            arguments.append(self.logic())
            while self.at("op", ","):
                self.next()
                arguments.append(self.logic())
        self.expect("op", ")", "')' to close the arguments")
        function = lookup(name.text, len(arguments))
        if function is None:
            return MissingFunction(name.text, len(arguments))
        return Call(function, tuple(arguments))

    def integer(self, text: str) -> int:
        value = int(text)
        if not INT32_MIN <= value <= INT32_MAX:
            raise self.error(f"integer literal {text} does not fit in 32 bits")
        return value
