"""The strict JSON/YAML readers every file input goes through (issue: duplicate keys)."""

from __future__ import annotations

import doctest

import pytest

from helpdesk_policy import loading
from helpdesk_policy.errors import DocumentError
from helpdesk_policy.loading import MAX_DEPTH, load_document, load_json, load_yaml


def test_doctests() -> None:
    result = doctest.testmod(loading, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize(
    "text",
    [
        '{"target": {"privilege_tier": 2, "privilege_tier": 0}}',
        '[{"a": 1, "b": 2, "a": 1}]',
    ],
)
def test_json_duplicate_keys_are_refused(text: str) -> None:
    with pytest.raises(DocumentError, match="duplicate key") as info:
        load_json(text, source="req.json")
    assert info.value.source == "req.json"


def test_yaml_duplicate_keys_are_refused_with_their_line() -> None:
    text = "target:\n  privilege_tier: 2\n  vip: false\n  privilege_tier: 0\n"
    with pytest.raises(DocumentError, match="duplicate key 'privilege_tier'") as info:
        load_yaml(text, source="org.yaml")
    assert info.value.line == 4
    assert str(info.value).startswith("org.yaml: line 4:")


def test_same_key_in_sibling_mappings_is_fine() -> None:
    assert load_yaml("a: {x: 1}\nb: {x: 2}\n") == {"a": {"x": 1}, "b": {"x": 2}}
    assert load_json('[{"x": 1}, {"x": 2}]') == [{"x": 1}, {"x": 2}]


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}'])
def test_json_non_standard_constants_are_refused(text: str) -> None:
    with pytest.raises(DocumentError, match="not valid JSON"):
        load_json(text)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_a_clean_error(depth: int) -> None:
    with pytest.raises(DocumentError, match="nested deeper"):
        load_json("[" * depth + "]" * depth)
    with pytest.raises(DocumentError, match="nested deeper"):
        load_yaml("[" * depth + "]" * depth)


def test_nesting_up_to_the_bound_is_read() -> None:
    assert load_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    # brackets inside strings do not count
    assert load_json('{"a": "' + "[" * 500 + '"}') == {"a": "[" * 500}


def test_syntax_errors_name_the_line() -> None:
    with pytest.raises(DocumentError) as info:
        load_json('{"a": 1,\n"b": }', source="x.json")
    assert info.value.line == 2
    with pytest.raises(DocumentError) as info:
        load_yaml("a: [1\n", source="x.yaml")
    assert info.value.line is not None


def test_files_that_are_not_utf8_or_missing(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(DocumentError, match="not UTF-8"):
        load_document(bad)
    with pytest.raises(DocumentError, match="cannot read"):
        load_document(tmp_path / "missing.yaml")
    good = tmp_path / "ok.yml"
    good.write_text("a: 1\n", encoding="utf-8")
    assert load_document(good) == {"a": 1}
