"""Rule schema and loader: valid documents load; every error names the file and the line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from detect.ruleset import (
    RULES_DIR,
    InvalidRule,
    InvalidRuleSet,
    categories,
    controls,
    load_lists,
    load_rules,
    parse_duration,
    parse_rule,
    refdata,
    techniques,
)

GOOD = textwrap.dedent("""\
    id: test-rule
    title: {zh: 测试规则, en: Test rule}
    description: a test
    severity: high
    protocol: modbus
    techniques: [T0855]
    category: 网络攻击事件/其他
    controls: [L3-ABS1-10]
    match:
      all:
        - {field: kind, equals: modbus}
        - {field: fields.func_code, in: [5, 6]}
    examples:
      - {pcap: modbus/modbus_example.pcap, frames: [36]}
""")


def test_good_rule_loads() -> None:
    r = parse_rule(GOOD, "test-rule.yml")
    assert (r.id, r.severity, r.protocol, r.techniques) == ("test-rule", "high", "modbus", ["T0855"])
    assert r.suppress == 60
    assert r.title.zh == "测试规则" and r.kinds() == frozenset({"modbus"})
    assert r.model.examples[0].frames == [36]


@pytest.mark.parametrize(("old", "new", "match"), [
    ("severity: high", "severity: urgent", r"bad\.yml:4: severity: Input should be"),
    ("techniques: [T0855]", "techniques: [T0855, T9999]", r"bad\.yml:6: techniques: unknown ATT&CK .*T9999"),
    ("category: 网络攻击事件/其他", "category: 网络攻击事件/黑客",
     r"bad\.yml:7: category: unknown GB/T 20986"),
    ("controls: [L3-ABS1-10]", "controls: [L9-XYZ-01]", r"bad\.yml:8: controls: unknown GB/T 22239"),
    ("id: test-rule", "id: Test_Rule", r"bad\.yml:1: id: id must be kebab-case"),
    ("description: a test\n", "", r"bad\.yml:1: description: Field required"),
    ("protocol: modbus", "protocol: profibus", r"bad\.yml:5: protocol: Input should be"),
    ("severity: high", "severity: high\nseverty: low",
     r"bad\.yml:5: severty: Extra inputs are not permitted"),
    ("{field: fields.func_code, in: [5, 6]}", "{field: fields.func_code, inn: [5, 6]}",
     r"bad\.yml:12: match\.all\.1\.inn: unknown operator 'inn'"),
    ("{field: kind, equals: modbus}", "{field: knd, equals: modbus}",
     r"bad\.yml:11: match\.all\.0\.field: unknown event field 'knd'"),
    ("{field: fields.func_code, in: [5, 6]}", "{field: fields.func, regex: '[unclosed'}",
     r"bad\.yml:12: match\.all\.1\.regex: regex does not compile"),
    ("frames: [36]", "frames: []", r"bad\.yml:14: examples\.0\.frames: List should have at least 1 item"),
    ("    - {field: kind, equals: modbus}\n", "    - {field: kind, equals: modbus\n",
     r"bad\.yml:1[12]: not valid YAML"),
])
def test_invalid_rule_names_file_and_line(old: str, new: str, match: str) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    with pytest.raises(InvalidRule, match=match) as e:
        parse_rule(text, "bad.yml")
    assert e.value.path == "bad.yml" and e.value.line is not None


def test_condition_error_deep_inside_maps_to_its_line() -> None:
    text = GOOD.replace("    - {field: fields.func_code, in: [5, 6]}\n", textwrap.indent(textwrap.dedent("""\
        - any:
            - {field: fields.func_code, in: [5, 6]}
            - not:
                {field: src.ip, cidr: 10.0.0.0/99}
    """), "    "))
    where = r"x\.yml:15: match\.all\.1\.any\.1\.not\.cidr: not an address"
    with pytest.raises(InvalidRule, match=where) as e:
        parse_rule(text, "x.yml")
    assert e.value.line == 15


def test_count_and_sequence_are_validated() -> None:
    with pytest.raises(InvalidRule, match=r"y\.yml:10: count\.within: not a duration"):
        parse_rule(GOOD.replace("match:", "count: {gte: 3,\n  within: 10 parsecs}\nmatch:"), "y.yml")
    with pytest.raises(InvalidRule, match=r"count\.by\.0: unknown event field 'host'"):
        parse_rule(GOOD.replace("match:", "count: {gte: 3, within: 10s, by: [host]}\nmatch:"), "y.yml")
    with pytest.raises(InvalidRule, match="cannot be combined"):
        parse_rule(GOOD.replace("match:", "count: {gte: 3, within: 10s}\nsequence: {steps: [{field: kind, "
                                "equals: a}, {field: kind, equals: b}], within: 5s}\nmatch:"), "y.yml")
    with pytest.raises(InvalidRule, match=r"sequence\.steps: List should have at least 2 items"):
        parse_rule(GOOD.replace("match:",
                                "sequence: {steps: [{field: kind, equals: a}], within: 5s}\nmatch:"))
    with pytest.raises(InvalidRule, match=r"z\.yml:12: sequence\.steps\.1\.equal: unknown operator"):
        parse_rule(GOOD.split("match:")[0] + "sequence:\n  steps:\n    - {field: kind, equals: a}\n"
                   "    - {field: kind, equal: b}\n  within: 5s\n", "z.yml")
    with pytest.raises(InvalidRule, match="needs `match`"):
        parse_rule(GOOD.split("match:")[0], "z.yml")


def test_several_schema_errors_of_one_file_are_all_reported() -> None:
    text = GOOD.replace("severity: high", "severity: urgent").replace("protocol: modbus", "protocol: x")
    with pytest.raises(InvalidRuleSet) as e:
        parse_rule(text, "two.yml")
    assert [(x.line, x.msg.split(":")[0]) for x in e.value.errors] == [(4, "severity"), (5, "protocol")]


def test_durations() -> None:
    got = [parse_duration(x) for x in ("10s", "500ms", "5m", "1h", 7, 2.5, "3")]
    assert got == [10, 0.5, 300, 3600, 7, 2.5, 3]
    for bad in ("10 parsecs", "-1s", -1, True, None):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_directory_load_collects_every_error(tmp_path: Path) -> None:
    (tmp_path / "modbus").mkdir()
    (tmp_path / "modbus" / "test-rule.yml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "modbus" / "copy.yml").write_text(GOOD, encoding="utf-8")
    bad = GOOD.replace("id: test-rule", "id: bad-one").replace("severity: high", "severity: x")
    (tmp_path / "modbus" / "bad-one.yml").write_text(bad, encoding="utf-8")
    (tmp_path / "modbus" / "bad-two.yml").write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(InvalidRuleSet) as e:
        load_rules(tmp_path)
    msgs = sorted(str(x) for x in e.value.errors)
    assert len(msgs) == 3
    assert any("bad-one.yml:4: severity" in m for m in msgs)
    assert any("bad-two.yml:" in m and "not valid YAML" in m for m in msgs)
    first = str(tmp_path / "modbus" / "test-rule.yml")
    assert any("duplicate rule id 'test-rule'" in m and m.startswith(first) for m in msgs)
    assert isinstance(e.value, ValueError)


def test_lists_file(tmp_path: Path) -> None:
    (tmp_path / "lists.yml").write_text("lists:\n  eng: [10.0.0.0/24, 10.9.9.9]\n", encoding="utf-8")
    (tmp_path / "r.yml").write_text(GOOD.replace("id: test-rule", "id: r").replace(
        "{field: kind, equals: modbus}", "{field: src.ip, in_list: eng}"), encoding="utf-8")
    rs = load_rules(tmp_path)
    assert rs.lists == {"eng": ["10.0.0.0/24", "10.9.9.9"]} and len(rs) == 1
    (tmp_path / "r.yml").write_text(GOOD.replace("id: test-rule", "id: r").replace(
        "{field: kind, equals: modbus}", "{field: src.ip, in_list: operators}"), encoding="utf-8")
    with pytest.raises(InvalidRule, match=r"r\.yml:11: .*unknown list 'operators' \(known: eng\)"):
        load_rules(tmp_path)
    (tmp_path / "lists.yml").write_text("lists:\n  eng: {a: 1}\n", encoding="utf-8")
    with pytest.raises(InvalidRule, match=r"lists\.yml:2: lists\.eng"):
        load_lists(tmp_path / "lists.yml")


def test_project_rules_load() -> None:
    rs = load_rules(RULES_DIR)
    assert len(rs) >= 50
    folders = {p.name for p in RULES_DIR.iterdir() if p.is_dir()}
    assert {r.protocol for r in rs} == folders
    parsed = {"modbus", "s7comm", "dnp3", "iec104", "enip", "opcua", "bacnet", "mqtt", "goose",
              "profinet_dcp", "omron_fins", "network"}
    assert parsed <= {r.protocol for r in rs}
    assert set(rs.lists) >= {"engineering_hosts", "iec104_masters"}


def test_refdata_carries_source_and_verified_flags() -> None:
    for name in ("attack_ics.yml", "gbt20986.yml", "gbt22239_controls.yml"):
        d = refdata(name)
        assert isinstance(d["source"], str) and d["source"]
        assert isinstance(d["verified"], bool)
    assert refdata("attack_ics.yml")["verified"] is True        # emergency-plan.md section 7: [V]
    assert refdata("gbt20986.yml")["verified"] is False         # sub-categories are [S] there
    assert techniques()["T0855"]["name"] == "Unauthorized Command Message"
    assert "网络攻击事件/网络扫描探测" in categories() and "网络攻击事件" in categories()
    assert "异常行为事件/工控协议异常" in categories()            # vendor extension, flagged in the file
    assert controls()["L3-CES5-04"]["clause"] == "8.5.4.1d"
    assert len(yaml.safe_load((RULES_DIR / "lists.yml").read_text(encoding="utf-8"))["lists"]) >= 2
