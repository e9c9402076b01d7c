"""lua-resty-expr compatible ``vars`` expressions (pylon.routing.expr)."""

from __future__ import annotations

import re

import pytest

from pylon.routing import expr as expr_mod
from pylon.routing.expr import ExprError, IpMatcher, compile_expr, lua_tonumber


class Vars:
    """Tiny dict-backed VarSource that records which variables were read."""

    def __init__(self, **values: object) -> None:
        self.values = values
        self.reads: list[str] = []

    def var(self, name: str):  # -> str | None (lists allowed for ``has``)
        self.reads.append(name)
        return self.values.get(name)


def ev(spec, **values) -> bool:
    return compile_expr(spec)(Vars(**values))


# --------------------------------------------------------------------------- structure


def test_empty_spec_matches_everything():
    assert ev([]) is True


def test_top_level_conditions_are_anded():
    spec = [["arg_a", "==", "1"], ["arg_b", "==", "2"]]
    assert ev(spec, arg_a="1", arg_b="2")
    assert not ev(spec, arg_a="1", arg_b="3")
    assert not ev(spec, arg_a="0", arg_b="2")


def test_and_stops_at_first_false_condition():
    src = Vars(arg_a="x", arg_b="2")
    assert compile_expr([["arg_a", "==", "1"], ["arg_b", "==", "2"]])(src) is False
    assert src.reads == ["arg_a"]


def test_or_stops_at_first_true_condition():
    src = Vars(arg_a="1")
    assert compile_expr(["OR", ["arg_a", "==", "1"], ["arg_b", "==", "2"]])(src) is True
    assert src.reads == ["arg_a"]


def test_or_matches_when_any_operand_matches():
    spec = ["OR", ["arg_a", "==", "1"], ["arg_b", "==", "2"], ["arg_c", "==", "3"]]
    assert ev(spec, arg_c="3")
    assert not ev(spec, arg_a="x", arg_b="y", arg_c="z")


def test_not_and_negates_the_conjunction():
    spec = ["!AND", ["arg_a", "==", "1"], ["arg_b", "==", "2"]]
    assert not ev(spec, arg_a="1", arg_b="2")
    assert ev(spec, arg_a="1", arg_b="x")


def test_not_or_negates_the_disjunction():
    spec = ["!OR", ["arg_a", "==", "1"], ["arg_b", "==", "2"]]
    assert ev(spec, arg_a="0", arg_b="0")
    assert not ev(spec, arg_b="2")


def test_logical_operators_are_case_insensitive():
    assert ev(["or", ["arg_a", "==", "1"], ["arg_a", "==", "2"]], arg_a="2")
    assert not ev(["!and", ["arg_a", "==", "1"], ["arg_b", "==", "2"]], arg_a="1", arg_b="2")


def test_nested_logical_expressions_to_any_depth():
    # readme example: not (name == json and (weight > 10 or not height > 15))
    spec = [
        "!AND",
        ["arg_name", "==", "json"],
        ["OR", ["arg_weight", ">", 10], ["arg_height", "!", ">", 15]],
    ]
    assert not ev(spec, arg_name="json", arg_weight="11", arg_height="20")
    assert ev(spec, arg_name="json", arg_weight="5", arg_height="20")
    assert ev(spec, arg_name="xml", arg_weight="11")

    deep = ["AND", ["arg_a", "==", "1"],
            ["OR", ["arg_b", "==", "1"],
             ["!OR", ["arg_c", "==", "1"],
              ["AND", ["arg_d", "==", "1"], ["arg_e", "==", "1"]]]]]
    assert ev(deep, arg_a="1", arg_b="1")
    assert ev(deep, arg_a="1", arg_c="0", arg_d="1", arg_e="0")
    assert not ev(deep, arg_a="1", arg_c="1")
    assert not ev(deep, arg_a="1", arg_d="1", arg_e="1")


def test_list_of_lists_inside_logical_operator_is_an_and_group():
    spec = ["OR", [["arg_a", "==", "1"], ["arg_b", "==", "1"]], ["arg_c", "==", "1"]]
    assert ev(spec, arg_a="1", arg_b="1")
    assert not ev(spec, arg_a="1")
    assert ev(spec, arg_c="1")


# --------------------------------------------------------------------------- operators


def test_equal_compares_strings():
    assert ev([["arg_name", "==", "json"]], arg_name="json")
    assert not ev([["arg_name", "==", "json"]], arg_name="JSON")


def test_equal_against_number_converts_variable_like_lua_tonumber():
    assert ev([["arg_id", "==", 1]], arg_id="1")
    assert ev([["arg_id", "==", 1]], arg_id="01")
    assert ev([["arg_id", "==", 1]], arg_id="1.0")
    assert ev([["arg_id", "==", 16]], arg_id="0x10")
    assert not ev([["arg_id", "==", 1]], arg_id="abc")
    assert not ev([["arg_id", "==", 1]], arg_id="1abc")


def test_equal_against_numeric_string_is_a_string_comparison():
    assert not ev([["arg_id", "==", "1"]], arg_id="01")


def test_not_equal_is_the_negation_of_equal():
    assert ev([["arg_name", "~=", "json"]], arg_name="xml")
    assert not ev([["arg_name", "~=", "json"]], arg_name="json")
    assert ev([["arg_id", "~=", 1]], arg_id="abc")  # tonumber fails -> not equal
    assert not ev([["arg_id", "~=", 1]], arg_id="1.0")


@pytest.mark.parametrize(
    "op,value,var,expected",
    [
        (">", 10, "11", True),
        (">", 10, "10", False),
        (">=", 10, "10", True),
        (">=", 10, "9.5", False),
        ("<", 10, "9", True),
        ("<", 10, "10", False),
        ("<=", 10, "10", True),
        ("<=", 10, "10.01", False),
        (">", "10", "11", True),  # numeric string constant
        (">", 10, " 11 ", True),  # lua tonumber tolerates surrounding spaces
        (">", 15, "0x10", True),  # hex
        (">", 1000, "1e4", True),  # exponent
        (">", -1, "-0.5", True),
        (">", 10, "abc", False),  # non-numeric -> false
        ("<", 10, "abc", False),
        (">", 10, "", False),
        (">", 10, "inf", False),  # not a lua number literal
        (">", 10, "1_000", False),  # python-only syntax
    ],
)
def test_ordering_operators_compare_numerically(op, value, var, expected):
    assert ev([["arg_x", op, value]], arg_x=var) is expected


def test_regex_match_searches_anywhere():
    assert ev([["http_user_agent", "~~", "Mobile"]], http_user_agent="Foo Mobile Bar")
    assert not ev([["http_user_agent", "~~", "^Mobile"]], http_user_agent="Foo Mobile")
    assert not ev([["arg_x", "~~", "[a-z]+"]], arg_x="123")


def test_regex_match_is_case_sensitive_and_tilde_star_is_not():
    assert not ev([["arg_x", "~~", "abc"]], arg_x="ABC")
    assert ev([["arg_x", "~*", "abc"]], arg_x="xABCx")


def test_regex_pcre_constructs_are_translated():
    assert ev([["arg_x", "~~", r"(?<year>\d{4})-\k<year>"]], arg_x="2024-2024")
    assert ev([["arg_x", "~~", r"^abc\z"]], arg_x="abc")
    assert not ev([["arg_x", "~~", r"^abc\z"]], arg_x="abc\n")
    assert ev([["arg_x", "~~", r"^abc\Z"]], arg_x="abc\n")
    assert ev([["arg_x", "~~", r"^\Qa.b*c\E$"]], arg_x="a.b*c")
    assert not ev([["arg_x", "~~", r"^\Qa.b\E$"]], arg_x="axb")
    assert ev([["arg_x", "~~", r"^[[:digit:]]+$"]], arg_x="123")
    assert not ev([["arg_x", "~~", r"^[[:alpha:]_]+$"]], arg_x="ab1")
    assert ev([["arg_x", "~~", r"^\x{41}$"]], arg_x="A")
    assert ev([["arg_x", "~~", r"a\hb"]], arg_x="a\tb")


def test_regex_classes_are_ascii_like_pcre_without_utf():
    assert not ev([["arg_x", "~~", r"^\d+$"]], arg_x="١٢٣")  # arabic-indic digits
    assert ev([["arg_x", "~~", r"^\d+$"]], arg_x="123")


def test_in_matches_when_variable_is_in_the_list():
    spec = [["arg_name", "in", ["json", "xml"]]]
    assert ev(spec, arg_name="xml")
    assert not ev(spec, arg_name="yaml")


def test_in_uses_lua_raw_equality_so_numbers_never_equal_strings():
    assert not ev([["arg_id", "in", [1, 2]]], arg_id="1")
    assert ev([["arg_id", "in", [1, "2"]]], arg_id="2")


def test_has_is_true_when_list_variable_contains_value():
    assert ev([["graphql_root_fields", "has", "repo"]], graphql_root_fields=["owner", "repo"])
    assert not ev([["graphql_root_fields", "has", "repo"]], graphql_root_fields=["owner"])
    # a plain string value never "has" anything (lua: has_element needs a table)
    assert not ev([["arg_x", "has", "a"]], arg_x="abc")


def test_ipmatch_matches_ipv4_addresses_and_cidrs():
    spec = [["remote_addr", "ipmatch", ["127.0.0.1", "192.168.0.0/16"]]]
    assert ev(spec, remote_addr="127.0.0.1")
    assert ev(spec, remote_addr="192.168.44.1")
    assert not ev(spec, remote_addr="192.169.0.1")
    assert not ev(spec, remote_addr="127.0.0.2")


def test_ipmatch_matches_ipv6_addresses_and_cidrs():
    spec = [["remote_addr", "ipmatch", ["::1", "fe80::/32", "2001:db8::/48"]]]
    assert ev(spec, remote_addr="::1")
    assert ev(spec, remote_addr="fe80:0:1::5")
    assert ev(spec, remote_addr="2001:db8:0:ffff::1")
    assert ev(spec, remote_addr="0:0:0:0:0:0:0:1")  # non-canonical spelling
    assert not ev(spec, remote_addr="2001:db8:1::1")
    assert not ev(spec, remote_addr="127.0.0.1")


def test_ipmatch_accepts_a_single_string_and_rejects_garbage_addresses():
    assert ev([["remote_addr", "ipmatch", "10.0.0.0/8"]], remote_addr="10.1.2.3")
    assert not ev([["remote_addr", "ipmatch", "10.0.0.0/8"]], remote_addr="not-an-ip")
    assert not ev([["remote_addr", "ipmatch", "10.0.0.0/8"]], remote_addr="")


def test_ipmatch_with_host_bits_set_is_treated_as_network():
    assert ev([["remote_addr", "ipmatch", ["10.1.2.3/8"]]], remote_addr="10.200.0.1")


def test_operators_are_case_insensitive():
    assert ev([["arg_x", "IN", ["a"]]], arg_x="a")
    assert ev([["remote_addr", "IPMATCH", ["10.0.0.0/8"]]], remote_addr="10.0.0.1")


def test_legacy_two_element_form_means_equal_to_lowercased_value():
    # lua-resty-expr: op = lower(op); r_v = op; op = "=="
    assert ev([["arg_x", "json"]], arg_x="json")
    assert ev([["arg_x", "JSON"]], arg_x="json")
    assert not ev([["arg_x", "JSON"]], arg_x="JSON")


# --------------------------------------------------------------------------- negation


def test_negation_inverts_each_operator():
    assert not ev([["arg_x", "!", "==", "a"]], arg_x="a")
    assert ev([["arg_x", "!", "==", "a"]], arg_x="b")
    assert ev([["arg_x", "!", ">", 15]], arg_x="10")
    assert not ev([["arg_x", "!", "~~", "^a"]], arg_x="abc")
    assert ev([["arg_x", "!", "in", ["a", "b"]]], arg_x="c")
    assert ev([["remote_addr", "!", "ipmatch", ["10.0.0.0/8"]]], remote_addr="11.0.0.1")


# --------------------------------------------------------------------------- nil variables


def test_missing_variable_follows_lua_nil_semantics():
    assert not ev([["arg_x", "==", "a"]])
    assert ev([["arg_x", "~=", "a"]])  # nil ~= "a"
    assert not ev([["arg_x", "==", 1]])
    assert ev([["arg_x", "~=", 1]])
    for op in (">", ">=", "<", "<="):
        assert not ev([["arg_x", op, 1]])
    assert not ev([["arg_x", "~~", ".*"]])
    assert not ev([["arg_x", "~*", ".*"]])
    assert not ev([["arg_x", "in", ["a"]]])
    assert not ev([["arg_x", "has", "a"]])
    assert not ev([["arg_x", "ipmatch", ["0.0.0.0/0"]]])


def test_negated_condition_on_missing_variable_is_true():
    assert ev([["arg_x", "!", "~~", ".*"]])
    assert ev([["arg_x", "!", "==", "a"]])
    assert ev([["arg_x", "!", ">", 1]])


def test_equal_null_tests_for_a_missing_variable():
    assert ev([["arg_x", "==", None]])
    assert not ev([["arg_x", "==", None]], arg_x="")
    assert ev([["arg_x", "~=", None]], arg_x="v")


def test_in_list_with_null_does_not_match_missing_variable():
    assert not ev([["arg_x", "in", [None, "a"]]])


# --------------------------------------------------------------------------- compile once


def test_evaluation_does_not_reparse_or_recompile(monkeypatch):
    pred = compile_expr([
        ["arg_x", "~~", "^a+$"],
        ["remote_addr", "ipmatch", ["10.0.0.0/8"]],
        ["arg_n", ">", "5"],
    ])

    def boom(*a, **k):
        raise AssertionError("compiled during evaluation")

    monkeypatch.setattr(re, "compile", boom)
    monkeypatch.setattr(expr_mod, "compile_pcre", boom)
    monkeypatch.setattr(expr_mod.ipaddress, "ip_network", boom)
    for _ in range(3):
        assert pred(Vars(arg_x="aaa", remote_addr="10.9.9.9", arg_n="6"))


def test_lua_tonumber_matches_lua_number_syntax():
    assert lua_tonumber("10") == 10
    assert lua_tonumber(" -2.5e1 ") == -25
    assert lua_tonumber("0x1F") == 31
    assert lua_tonumber("-0x10") == -16
    assert lua_tonumber(".5") == 0.5
    assert lua_tonumber("5.") == 5
    for bad in ("", " ", "abc", "1_0", "nan", "inf", "0x", "1e", "--1", None, True, [1]):
        assert lua_tonumber(bad) is None, bad
    assert lua_tonumber(7) == 7


def test_ip_matcher_checks_all_prefix_lengths():
    m = IpMatcher(["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "::/0"])
    assert m.match("10.200.0.1")
    assert m.match("10.1.2.3")
    assert m.match("2001::1")
    assert not m.match("11.0.0.1")
    assert not m.match(None)
    assert not m.match("10.0.0.1/8")


# --------------------------------------------------------------------------- invalid specs


def _error(spec) -> ExprError:
    with pytest.raises(ExprError) as ei:
        compile_expr(spec)
    return ei.value


def test_unknown_operator_reports_its_path():
    e = _error([["arg_x", "==", "1"], ["arg_y", "xx", "1"]])
    assert e.path == "vars[1][1]"
    assert "unknown operator 'xx'" in str(e)
    assert str(e) == "unknown operator 'xx' at vars[1][1]"


def test_unknown_operator_after_negation_reports_its_path():
    e = _error([["arg_y", "!", "xx", "1"]])
    assert e.path == "vars[0][2]"


def test_bad_negation_marker_is_rejected():
    e = _error([["arg_x", "not", "==", "1"]])
    assert e.path == "vars[0][1]"
    assert "'not' expression" in e.message


def test_bad_regex_reports_the_value_path():
    e = _error([["arg_x", "==", "1"], ["OR", ["arg_a", "==", "1"], ["arg_b", "~~", "a(b"]]])
    assert e.path == "vars[1][2][2]"
    assert "bad regex" in e.message


def test_bad_cidr_reports_the_element_path():
    e = _error([["remote_addr", "ipmatch", ["10.0.0.0/8", "10.0.0.0/33"]]])
    assert e.path == "vars[0][2][1]"
    assert "bad CIDR '10.0.0.0/33'" in e.message
    e = _error([["remote_addr", "ipmatch", "nope"]])
    assert e.path == "vars[0][2]"


def test_empty_ipmatch_list_is_rejected():
    assert _error([["remote_addr", "ipmatch", []]]).path == "vars[0][2]"


def test_logical_operator_needs_two_operands():
    e = _error([["arg_x", "==", "1"], ["OR", ["arg_y", "==", "1"]]])
    assert e.path == "vars[1]"
    assert "too short" in e.message


def test_bare_condition_at_top_level_must_be_wrapped():
    e = _error(["arg_x", "==", "1"])
    assert e.path == "vars"
    assert "wrapped" in e.message


def test_spec_must_be_a_list():
    assert _error("arg_x == 1").path == "vars"
    assert _error({"arg_x": 1}).path == "vars"


@pytest.mark.parametrize(
    "spec,path",
    [
        ([["arg_x"]], "vars[0]"),  # too short
        ([["arg_x", "==", "1", "2", "3"]], "vars[0]"),  # too long
        ([[1, "==", "1"]], "vars[0][0]"),  # var name not a string
        ([["arg_x", "in", "abc"]], "vars[0][2]"),  # in needs a list
        ([["arg_x", ">", "abc"]], "vars[0][2]"),  # order needs a number
        ([["arg_x", "~~", 5.5j]], "vars[0][2]"),  # regex must be a string
        ([["arg_x", "==", "1"], []], "vars[1]"),  # empty nested rule
        ([["arg_x", "==", "1"], "arg_y"], "vars[1]"),  # not a list
        ([["arg_x", ["=="], "1"]], "vars[0][1]"),  # operator not a string
    ],
)
def test_malformed_conditions_are_rejected_with_path(spec, path):
    assert _error(spec).path == path
