"""The linter: zero errors over the project's rules, and each check catches what it is for."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from detect.lint import ERROR, INFO, WARNING, lint_dir, main
from detect.ruleset import RULES_DIR
from tests.conftest import PCAPS, need_shared

GOOD = textwrap.dedent("""\
    id: {id}
    title: {{zh: 测试, en: Test}}
    description: a test
    severity: low
    protocol: modbus
    techniques: [T0855]
    category: 网络攻击事件/其他
    controls: [L3-ABS1-10]
    match:
      all:
        - {{field: kind, equals: modbus}}
        - {{field: fields.func, equals: WRITE_SINGLE_COIL}}
    examples:
      - {{pcap: modbus/modbus_example.pcap, frames: [36]}}
    negative:
      - {{pcap: modbus/modbusSmall.pcap}}
""")


def write(d: Path, rel: str, text: str) -> Path:
    p = d / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


def issues_of(d: Path, check: str | None = None):
    return [i for i in lint_dir(d) if check is None or i.check == check]


def test_project_rules_have_no_lint_errors() -> None:
    need_shared(PCAPS)                        # the linter checks that example captures exist
    issues = lint_dir(RULES_DIR)
    errors = [str(i) for i in issues if i.severity == ERROR]
    assert errors == []
    assert not [str(i) for i in issues if i.severity == WARNING]


def test_clean_rule_has_no_issues(tmp_path: Path) -> None:
    need_shared(PCAPS / "modbus" / "modbus_example.pcap")     # its example capture
    write(tmp_path, "modbus/a-rule.yml", GOOD.format(id="a-rule"))
    assert issues_of(tmp_path) == []


def test_id_must_match_file_name_and_folder_the_protocol(tmp_path: Path) -> None:
    write(tmp_path, "dnp3/other-name.yml", GOOD.format(id="a-rule"))
    got = {(i.check, i.severity, i.line) for i in issues_of(tmp_path)}
    assert ("IdMatchesFileName", ERROR, 1) in got and ("FolderMatchesProtocol", WARNING, 5) in got


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path, "modbus/a-rule.yml", GOOD.format(id="a-rule"))
    write(tmp_path, "modbus/sub/a-rule.yml", GOOD.format(id="a-rule"))
    dup = issues_of(tmp_path, "DuplicateId")
    assert len(dup) == 2
    assert all(i.severity == ERROR and "duplicate rule id 'a-rule'" in i.message for i in dup)


def test_unknown_references_are_errors_with_lines(tmp_path: Path) -> None:
    text = (GOOD.format(id="a-rule").replace("[T0855]", "[T0855, T0000]").replace("网络攻击事件/其他", "攻击")
            .replace("[L3-ABS1-10]", "[L3-ABS1-99]"))
    write(tmp_path, "modbus/a-rule.yml", text)
    got = sorted((i.line, i.message.split(" '")[0]) for i in issues_of(tmp_path, "UnknownReference"))
    assert got == [(6, "unknown ATT&CK for ICS technique"), (7, "unknown GB/T 20986-2023 category"),
                   (8, "unknown GB/T 22239 control")]


def test_undocumented_fields(tmp_path: Path) -> None:
    # modbus declares FIELDS: a typo is an error; opcua has only its docs page: a warning
    write(tmp_path, "modbus/a-rule.yml", GOOD.format(id="a-rule").replace("fields.func,", "fields.funct,"))
    write(tmp_path, "opcua/b-rule.yml", GOOD.format(id="b-rule").replace("protocol: modbus",
                                                                         "protocol: opcua")
          .replace("equals: modbus}", "equals: opcua}").replace("fields.func,", "fields.servise,"))
    got = {(i.rule_id, i.severity, i.line) for i in issues_of(tmp_path, "DocumentedField")}
    assert got == {("a-rule", ERROR, 12), ("b-rule", WARNING, 12)}
    # weird and flow events have their own fields
    write(tmp_path, "modbus/a-rule.yml", GOOD.format(id="a-rule").replace("equals: modbus}", "equals: weird}")
          .replace("fields.func, equals: WRITE_SINGLE_COIL", "fields.name, equals: bad_length"))
    assert [i.rule_id for i in issues_of(tmp_path, "DocumentedField")] == ["b-rule"]


def test_missing_examples_and_chinese_title(tmp_path: Path) -> None:
    text = GOOD.format(id="a-rule").replace("zh: 测试, ", "")
    text = text[:text.index("examples:")]
    write(tmp_path, "modbus/a-rule.yml", text)
    got = {(i.check, i.severity) for i in issues_of(tmp_path)}
    assert {("HasExamples", ERROR), ("HasExamples", INFO), ("ChineseTitle", ERROR)} <= got
    write(tmp_path, "modbus/a-rule.yml", GOOD.format(id="a-rule").replace("zh: 测试", "zh: test")
          .replace("modbus/modbus_example.pcap", "modbus/no-such.pcap"))
    got = {(i.check, i.severity, i.line) for i in issues_of(tmp_path)}
    assert ("ChineseTitle", WARNING, 2) in got and ("HasExamples", WARNING, 14) in got


def test_bad_regex_and_window_without_by(tmp_path: Path) -> None:
    text = GOOD.format(id="a-rule").replace("equals: WRITE_SINGLE_COIL", "regex: '(unclosed'")
    text = text.replace("match:", "count: {gte: 5, within: 10s}\nmatch:")
    write(tmp_path, "modbus/a-rule.yml", text)
    got = {(i.check, i.severity, i.line) for i in issues_of(tmp_path)}
    assert ("RegexCompiles", ERROR, 13) in got and ("WindowHasBy", WARNING, 9) in got
    assert not [i for i in issues_of(tmp_path, "ConditionCompiles")]     # reported once, by RegexCompiles


def test_schema_errors_become_issues_and_lint_goes_on(tmp_path: Path) -> None:
    write(tmp_path, "modbus/a-rule.yml", GOOD.format(id="a-rule").replace("severity: low", "severity: meh"))
    write(tmp_path, "modbus/b-rule.yml", "id: [\n")
    write(tmp_path, "modbus/c-rule.yml", GOOD.format(id="c-rule").replace("{field: kind,", "{fild: kind,"))
    got = sorted((Path(i.file).name, i.check, i.line) for i in issues_of(tmp_path) if i.severity == ERROR)
    assert got == [("a-rule.yml", "Schema", 4), ("b-rule.yml", "Schema", 2),
                   ("c-rule.yml", "ConditionCompiles", 11)]


def test_cli_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "modbus/a-rule.yml", GOOD.format(id="a-rule"))
    assert main([str(tmp_path)]) == 0
    write(tmp_path, "modbus/b-rule.yml", GOOD.format(id="a-rule"))
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "DuplicateId" in out.out and "2 rules: " in out.err
