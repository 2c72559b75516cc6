"""Calico's label selector language: parser and a pure, immutable AST.

Grammar (as libcalico-go's tokenizer/parser accept it)::

    or_expr   := and_expr ( "||" and_expr )*
    and_expr  := operation ( "&&" operation )*
    operation := "!"* ( "all()" | "global()" | "has(" label ")" | "(" or_expr ")"
                        | label ( "==" | "!=" | "contains" | "starts with"
                                  | "ends with" ) string
                        | label ( "in" | "not in" ) "{" [string ("," string)*] "}" )

Labels are ``[A-Za-z0-9_./-]+``; strings are single- or double-quoted without
escapes.  An empty selector means ``all()``.  ``!=`` and ``not in`` match when
the label is absent; ``global()`` matches everything (it only tells a
namespaced context to look at non-namespaced objects).  Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from pybgp.errors import ValidationError

Labels = Mapping[str, str]


class Selector:
    """A node of the AST.  ``str(sel)`` is a canonical selector text."""

    def matches(self, labels: Labels) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class All(Selector):
    def matches(self, labels: Labels) -> bool:
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True)
class Global(Selector):
    def matches(self, labels: Labels) -> bool:
        return True

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True)
class Has(Selector):
    label: str

    def matches(self, labels: Labels) -> bool:
        return self.label in labels

    def __str__(self) -> str:
        return f"has({self.label})"


def _quote(value: str) -> str:
    return f'"{value}"' if "'" in value else f"'{value}'"


@dataclass(frozen=True)
class Compare(Selector):
    """``label OP 'value'`` for ==, !=, contains, starts with, ends with."""

    label: str
    op: str
    value: str

    def matches(self, labels: Labels) -> bool:
        actual = labels.get(self.label)
        if actual is None:
            return self.op == "!="
        if self.op == "==":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        if self.op == "contains":
            return self.value in actual
        if self.op == "starts with":
            return actual.startswith(self.value)
        return actual.endswith(self.value)

    def __str__(self) -> str:
        return f"{self.label} {self.op} {_quote(self.value)}"


@dataclass(frozen=True)
class In(Selector):
    """``label in {...}`` or, with ``negated``, ``label not in {...}``."""

    label: str
    values: frozenset[str]
    negated: bool = False

    def matches(self, labels: Labels) -> bool:
        actual = labels.get(self.label)
        if actual is None:
            return self.negated
        return (actual in self.values) != self.negated

    def __str__(self) -> str:
        op = "not in" if self.negated else "in"
        return f"{self.label} {op} {{{', '.join(_quote(v) for v in sorted(self.values))}}}"


@dataclass(frozen=True)
class Not(Selector):
    operand: Selector

    def matches(self, labels: Labels) -> bool:
        return not self.operand.matches(labels)

    def __str__(self) -> str:
        return f"!{self.operand}"


@dataclass(frozen=True)
class And(Selector):
    operands: tuple[Selector, ...]

    def matches(self, labels: Labels) -> bool:
        return all(op.matches(labels) for op in self.operands)

    def __str__(self) -> str:
        return "(" + " && ".join(str(op) for op in self.operands) + ")"


@dataclass(frozen=True)
class Or(Selector):
    operands: tuple[Selector, ...]

    def matches(self, labels: Labels) -> bool:
        return any(op.matches(labels) for op in self.operands)

    def __str__(self) -> str:
        return "(" + " || ".join(str(op) for op in self.operands) + ")"


# --- tokenizer ---------------------------------------------------------------

_LABEL = re.compile(r"[A-Za-z0-9_./-]+")
_WS = re.compile(r"[ \t]*")
_OPERATORS = (  # tried in order after a label; multi-word ones allow blanks inside
    ("contains", re.compile(r"contains(?![A-Za-z0-9_./-])")),
    ("starts with", re.compile(r"starts[ \t]*with(?![A-Za-z0-9_./-])")),
    ("ends with", re.compile(r"ends[ \t]*with(?![A-Za-z0-9_./-])")),
    ("not in", re.compile(r"not[ \t]*in(?![A-Za-z0-9_./-])")),
    ("in", re.compile(r"in(?![A-Za-z0-9_./-])")),
)
_FUNCS = (("has", re.compile(r"has\([ \t]*([A-Za-z0-9_./-]+)[ \t]*\)")),
          ("all", re.compile(r"all\([ \t]*\)")),
          ("global", re.compile(r"global\([ \t]*\)")))
_PUNCT = {"(": "(", ")": ")", "{": "{", "}": "}", ",": ",", "==": "==", "!=": "!=",
          "&&": "&&", "||": "||", "!": "!"}

MAX_LABEL_LENGTH = 512


@dataclass(frozen=True)
class _Tok:
    kind: str  # label, string, has, all, global, an operator or punctuation, eof
    value: str
    pos: int


def _error(text: str, pos: int, message: str) -> ValidationError:
    return ValidationError(f"invalid selector {text!r}: {message} at position {pos}")


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    while True:
        i = _WS.match(text, i).end()  # type: ignore[union-attr]
        if i >= len(text):
            toks.append(_Tok("eof", "", i))
            return toks
        c = text[i]
        if c in "'\"":
            end = text.find(c, i + 1)
            if end < 0:
                raise _error(text, i, "unterminated string")
            toks.append(_Tok("string", text[i + 1:end], i))
            i = end + 1
            continue
        two = text[i:i + 2]
        if two in _PUNCT:
            toks.append(_Tok(two, two, i))
            i += 2
            continue
        if c in "(){},!":
            toks.append(_Tok(c, c, i))
            i += 1
            continue
        if c in "=&|":
            raise _error(text, i, f"expected {c * 2}")
        if toks and toks[-1].kind == "label":
            for op, rx in _OPERATORS:
                m = rx.match(text, i)
                if m:
                    toks.append(_Tok(op, op, i))
                    i = m.end()
                    break
            else:
                raise _error(text, i, f"expected operator after label {toks[-1].value!r}")
            continue
        for fname, rx in _FUNCS:
            m = rx.match(text, i)
            if m:
                toks.append(_Tok(fname, m.group(1) if fname == "has" else "", i))
                i = m.end()
                break
        else:
            for fname in ("has(", "all(", "global("):
                if text.startswith(fname, i):
                    raise _error(text, i, f"malformed {fname}...) (no closing ')' or bad label)")
            m = _LABEL.match(text, i)
            if not m:
                raise _error(text, i, f"unexpected character {c!r}")
            if len(m.group()) > MAX_LABEL_LENGTH:
                raise _error(text, i, "label too long")
            toks.append(_Tok("label", m.group(), i))
            i = m.end()


# --- parser ------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, kind: str | None = None, what: str = "") -> _Tok:
        tok = self.toks[self.i]
        if kind is not None and tok.kind != kind:
            raise self.unexpected(tok, what or kind)
        self.i += 1
        return tok

    def unexpected(self, tok: _Tok, expected: str) -> ValidationError:
        got = "end of selector" if tok.kind == "eof" else repr(tok.value or tok.kind)
        return _error(self.text, tok.pos, f"expected {expected}, got {got}")

    def parse(self) -> Selector:
        if self.peek().kind == "eof":
            return All()
        sel = self.or_expr()
        if self.peek().kind != "eof":
            raise self.unexpected(self.peek(), "'&&', '||' or end of selector")
        return sel

    def or_expr(self) -> Selector:
        ops = [self.and_expr()]
        while self.peek().kind == "||":
            self.take()
            ops.append(self.and_expr())
        return ops[0] if len(ops) == 1 else Or(tuple(ops))

    def and_expr(self) -> Selector:
        ops = [self.operation()]
        while self.peek().kind == "&&":
            self.take()
            ops.append(self.operation())
        return ops[0] if len(ops) == 1 else And(tuple(ops))

    def operation(self) -> Selector:
        negated = False
        while self.peek().kind == "!":
            self.take()
            negated = not negated
        tok = self.take()
        sel: Selector
        if tok.kind == "has":
            sel = Has(tok.value)
        elif tok.kind == "all":
            sel = All()
        elif tok.kind == "global":
            sel = Global()
        elif tok.kind == "(":
            sel = self.or_expr()
            self.take(")", "')'")
        elif tok.kind == "label":
            sel = self.comparison(tok.value)
        else:
            raise self.unexpected(tok, "a label, has(), all(), global(), '!' or '('")
        return Not(sel) if negated else sel

    def comparison(self, label: str) -> Selector:
        op = self.take()
        if op.kind in ("==", "!=", "contains", "starts with", "ends with"):
            value = self.take("string", "a quoted string").value
            return Compare(label, op.kind, value)
        if op.kind in ("in", "not in"):
            self.take("{", "'{'")
            values: list[str] = []
            while self.peek().kind == "string":
                values.append(self.take().value)
                if self.peek().kind != ",":
                    break
                self.take()
            self.take("}", "'}' or a quoted string")
            return In(label, frozenset(values), negated=op.kind == "not in")
        raise self.unexpected(op, "an operator (==, !=, in, not in, contains, ...)")


@lru_cache(maxsize=4096)
def parse(text: str) -> Selector:
    """Parse a selector; raises ``ValidationError`` naming the position of the error."""
    if not isinstance(text, str):
        raise ValidationError(f"invalid selector {text!r}: expected a string")
    return _Parser(text).parse()


def matches(text: str, labels: Labels) -> bool:
    """Convenience: ``parse(text).matches(labels)``."""
    return parse(text).matches(labels)


def uses_global(sel: Selector) -> bool:
    """Whether ``global()`` appears anywhere in ``sel``."""
    if isinstance(sel, Global):
        return True
    if isinstance(sel, Not):
        return uses_global(sel.operand)
    if isinstance(sel, And | Or):
        return any(uses_global(op) for op in sel.operands)
    return False
