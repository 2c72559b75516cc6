"""Calico selector grammar: matching semantics, canonical text, errors."""

from __future__ import annotations

import pytest

from pybgp.errors import ValidationError
from pybgp.model.selector import And, Compare, Has, In, Not, Or, matches, parse

LABELS = {"app": "web", "tier": "front-end", "env": "prod", "k8s.io/role": "x"}


@pytest.mark.parametrize("text, expected", [
    ("", True),
    ("all()", True),
    ("global()", True),
    ("has(app)", True),
    ("has(missing)", False),
    ("!has(missing)", True),
    ("! has(app)", False),
    ("!!has(app)", True),
    ("app == 'web'", True),
    ('app == "db"', False),
    ("app != 'db'", True),
    ("missing != 'x'", True),          # != matches an absent label
    ("missing == ''", False),
    ("app in {'web', 'db'}", True),
    ("app in {}", False),
    ("app not in {'web'}", False),
    ("missing not in {'a'}", True),    # not in matches an absent label
    ("app notin {'db'}", True),
    ("tier contains 'end'", True),
    ("tier starts with 'front'", True),
    ("tier startswith 'front'", True),
    ("tier ends with 'end'", True),
    ("missing contains ''", False),
    ("k8s.io/role == 'x'", True),
    ("app == 'web' && env == 'prod'", True),
    ("app == 'web' && env == 'dev'", False),
    ("app == 'db' || env == 'prod'", True),
    ("app == 'db' || env == 'dev' && has(app)", False),
    ("app == 'web' || env == 'dev' && has(nope)", True),   # && binds tighter
    ("(app == 'web' || env == 'dev') && has(nope)", False),
    ("!(app == 'db' || env == 'dev')", True),
    ("\thas( app )\t&&all( )", True),
])
def test_matches(text, expected):
    assert parse(text).matches(LABELS) is expected
    assert matches(text, LABELS) is expected


@pytest.mark.parametrize("text, pos, fragment", [
    ("app = 'web'", 4, "expected =="),
    ("app == web", 7, "quoted string"),
    ("app == 'web", 7, "unterminated string"),
    ("app", 3, "expected an operator"),
    ("app has 'x'", 4, "expected operator after label"),
    ("has(app", 0, "no closing ')'"),
    ("x == 'a' && all(1)", 12, "malformed all("),
    ("app == 'a' &", 11, "expected &&"),
    ("app == 'a' |", 11, "expected ||"),
    ("app == 'a' app == 'b'", 11, "'&&', '||' or end"),
    ("(has(a)", 7, "')'"),
    ("app in 'a'", 7, "'{'"),
    ("app in {'a' 'b'}", 12, "'}'"),
    ("&& has(a)", 0, "a label"),
    ("has(a) &&", 9, "end of selector"),
    ("app == 'a' #", 11, "unexpected character"),
])
def test_errors_name_the_position(text, pos, fragment):
    with pytest.raises(ValidationError) as info:
        parse(text)
    msg = str(info.value)
    assert f"at position {pos}" in msg
    assert fragment in msg
    assert repr(text) in msg


def test_ast_shape_and_canonical_text():
    sel = parse("a == 'x' && !has(b) || c in {'2', '1'}")
    assert sel == Or((And((Compare("a", "==", "x"), Not(Has("b")))),
                      In("c", frozenset({"1", "2"}))))
    assert str(sel) == "((a == 'x' && !has(b)) || c in {'1', '2'})"
    assert parse(str(sel)) == sel
    assert str(parse("a == \"it's\"")) == "a == \"it's\""


def test_parse_is_cached():
    assert parse("has(a)") is parse("has(a)")


def test_label_length_limit():
    with pytest.raises(ValidationError, match="label too long"):
        parse("a" * 600 + " == 'x'")
