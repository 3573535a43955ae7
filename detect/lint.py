"""Rule linter: small check classes returning issues (capa `Lint`, pySigma validators).

    python -m detect.lint rules/          # or: icsight rules lint [DIR]

Every check looks at one rule (`check`) and may look across rules at the end (`finalize`, e.g. duplicate
ids). Issues carry severity, rule id, file, line, message and a recommendation. A run collects every
issue and never stops at the first; the exit status is 1 when any issue is an error.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from detect import ruleset
from detect.alerts import ALERT_FIELDS
from detect.engine import ConditionError, compile_condition
from detect.ruleset import InvalidRule, InvalidRuleSet, RuleModel, compose, line_of

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "protocols"

ERROR, WARNING, INFO = "error", "warning", "info"

# kind -> (sensor module, protocol doc) for field checks
KIND_SOURCES = {
    "modbus": ("sensors.modbus", "modbus.md"),
    "s7comm": ("sensors.s7comm", "s7comm.md"),
    "s7comm_plus": ("sensors.s7comm_plus", "s7comm.md"),
    "cotp": ("sensors.cotp", "s7comm.md"),
    "dnp3": ("sensors.dnp3", "dnp3.md"),
    "iec104": ("sensors.iec104", "iec104.md"),
    "enip": ("sensors.enip", "enip.md"),
    "cip": ("sensors.enip", "enip.md"),
    "opcua": ("sensors.opcua", "opcua.md"),
    "bacnet": ("sensors.bacnet", "bacnet.md"),
    "mqtt": ("sensors.mqtt", "mqtt.md"),
    "goose": ("sensors.goose", "goose.md"),
    "mms": ("sensors.mms", "mms.md"),
    "profinet_dcp": ("sensors.profinet_dcp", "profinet_dcp.md"),
    "omron_fins": ("sensors.omron_fins", "omron_fins.md"),
}
# protocol folder -> event kinds its rules usually look at (when a rule names no kind)
PROTOCOL_KINDS = {"s7comm": ("s7comm", "s7comm_plus", "cotp"), "enip": ("enip", "cip"),
                  "network": ("flow", "weird")}
# fields of the kinds every stage shares (sensors/flows.py `Flow.record`, `Conn.weird`, detect/alerts.py)
FLOW_FIELDS = {"uid", "proto", "service", "duration", "orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts",
               "orig_ip_bytes", "resp_ip_bytes", "conn_state", "history", "missed_bytes", "retransmissions",
               "frames_truncated"}
WEIRD_FIELDS = {"protocol", "name", "reason"}
# fields every protocol transaction may carry (sensors/base.py conventions)
COMMON_FIELDS = {"status", "latency", "points", "identity", "identity_of"}


@dataclass(frozen=True, slots=True)
class LintIssue:
    severity: str            # error | warning | info
    check: str               # the check class name
    rule_id: str | None
    file: str
    message: str
    recommendation: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        rec = f" -> {self.recommendation}" if self.recommendation else ""
        return f"{self.severity.upper():7} {where} [{self.rule_id or '-'}] {self.check}: {self.message}{rec}"


@dataclass
class RuleDoc:
    """One parsed rule file as the checks see it: raw data, YAML nodes, the schema model."""

    path: Path
    data: dict[str, Any]
    node: yaml.Node | None
    model: RuleModel
    lists: dict[str, list[str]] = field(default_factory=dict)

    def line(self, *loc: str | int) -> int | None:
        return line_of(self.node, loc)

    def issue(self, check: Check, severity: str, message: str, recommendation: str = "",
              loc: tuple = ()) -> LintIssue:
        return LintIssue(severity, type(check).__name__, self.model.id, str(self.path), message,
                         recommendation, self.line(*loc))


class Check:
    """One lint check. `check` yields the issues of one rule; `finalize` those across rules."""

    def check(self, doc: RuleDoc) -> Iterator[LintIssue]:
        return iter(())

    def finalize(self) -> Iterator[LintIssue]:
        return iter(())


# ---------------------------------------------------------------- condition walking


def conditions(data: dict[str, Any]) -> Iterator[tuple[tuple, Any]]:
    """(location, condition) of every top-level condition of a rule document."""
    if data.get("match") is not None:
        yield ("match",), data["match"]
    seq = data.get("sequence")
    if isinstance(seq, dict):
        for i, st in enumerate(seq.get("steps") or []):
            yield ("sequence", "steps", i), st


def leaves(cond: Any, loc: tuple) -> Iterator[tuple[tuple, dict[str, Any]]]:
    """Every `{field: ..., <op>: ...}` mapping inside a condition, with its location."""
    if not isinstance(cond, dict):
        return
    for comb in ("all", "any"):
        if isinstance(cond.get(comb), list):
            for i, c in enumerate(cond[comb]):
                yield from leaves(c, (*loc, comb, i))
    if "not" in cond:
        yield from leaves(cond["not"], (*loc, "not"))
    if "field" in cond:
        yield loc, cond


def field_paths(doc: RuleDoc) -> Iterator[tuple[tuple, str]]:
    """Every field path a rule uses: conditions, count/sequence `by` and `distinct`, `group_by`."""
    for loc, cond in conditions(doc.data):
        for lloc, leaf in leaves(cond, loc):
            if isinstance(leaf.get("field"), str):
                yield (*lloc, "field"), leaf["field"]
    for key in ("count", "sequence"):
        spec = doc.data.get(key)
        if isinstance(spec, dict):
            for i, p in enumerate(spec.get("by") or []):
                yield (key, "by", i), p
            if isinstance(spec.get("distinct"), str):
                yield (key, "distinct"), spec["distinct"]
    for i, p in enumerate(doc.data.get("group_by") or []):
        yield ("group_by", i), p


def rule_kinds(doc: RuleDoc) -> set[str]:
    """Event kinds a rule targets: from its `kind` conditions, else the usual kinds of its protocol."""
    kinds: set[str] = set()
    for loc, cond in conditions(doc.data):
        try:
            ks = compile_condition(cond, doc.lists, loc).kinds()
        except ConditionError:
            ks = None
        if ks:
            kinds |= set(ks)
    if kinds:
        return kinds
    return set(PROTOCOL_KINDS.get(doc.model.protocol, (doc.model.protocol,)))


# ---------------------------------------------------------------- checks


class IdMatchesFileName(Check):
    def check(self, doc):
        if doc.path.stem != doc.model.id:
            yield doc.issue(self, ERROR, f"id {doc.model.id!r} differs from the file name {doc.path.name!r}",
                            f"rename the file to {doc.model.id}.yml", ("id",))


class FolderMatchesProtocol(Check):
    def check(self, doc):
        if doc.path.parent.name != doc.model.protocol:
            msg = f"rule of protocol {doc.model.protocol!r} lives in folder {doc.path.parent.name!r}"
            yield doc.issue(self, WARNING, msg, f"move it to rules/{doc.model.protocol}/", ("protocol",))


class DuplicateId(Check):
    def __init__(self) -> None:
        self.seen: dict[str, list[RuleDoc]] = {}

    def check(self, doc):
        self.seen.setdefault(doc.model.id, []).append(doc)
        return iter(())

    def finalize(self):
        for rid, docs in self.seen.items():
            if len(docs) > 1:
                files = ", ".join(str(d.path) for d in docs)
                for d in docs:
                    yield d.issue(self, ERROR, f"duplicate rule id {rid!r} ({files})",
                                  "give each rule a unique id", ("id",))


class UnknownReference(Check):
    """Technique, category and control ids must exist in detect/refdata."""

    def check(self, doc):
        techs = ruleset.techniques()
        for i, t in enumerate(doc.model.techniques):
            if t not in techs:
                yield doc.issue(self, ERROR, f"unknown ATT&CK for ICS technique {t!r}",
                                "use an id of detect/refdata/attack_ics.yml (add it there from the ATT&CK "
                                "for ICS bundle if missing)", ("techniques", i))
        if doc.model.category not in ruleset.categories():
            yield doc.issue(self, ERROR, f"unknown GB/T 20986-2023 category {doc.model.category!r}",
                            "use 类别 or 类别/子类 of detect/refdata/gbt20986.yml", ("category",))
        ctl = ruleset.controls()
        for i, c in enumerate(doc.model.controls):
            if c not in ctl:
                yield doc.issue(self, ERROR, f"unknown GB/T 22239 control {c!r}",
                                "use a GB/T 28448 test-unit id of detect/refdata/gbt22239_controls.yml "
                                "(from mlps.md Appendix A)", ("controls", i))
        if not doc.model.techniques:
            yield doc.issue(self, WARNING, "no ATT&CK for ICS technique", "map the rule to at least one "
                            "technique", ("techniques",))


class ConditionCompiles(Check):
    """The conditions compile (operators, argument types, field paths, list names)."""

    def check(self, doc):
        try:
            ruleset.compile_rule(doc.model, doc.path, doc.node, doc.lists)
        except InvalidRule as e:
            if "regex does not compile" not in e.msg:      # RegexCompiles reports those
                yield LintIssue(ERROR, type(self).__name__, doc.model.id, str(doc.path), e.msg,
                                "fix the condition (see docs/rules.md for the operators)", e.line)


class RegexCompiles(Check):
    def check(self, doc):
        for loc, cond in conditions(doc.data):
            for lloc, leaf in leaves(cond, loc):
                if "regex" in leaf:
                    try:
                        re.compile(leaf["regex"])
                    except (re.error, TypeError) as e:
                        yield doc.issue(self, ERROR, f"regex {leaf['regex']!r} does not compile: {e}",
                                        "fix the pattern (Python re syntax)", (*lloc, "regex"))


class DocumentedField(Check):
    """`fields.X` must be in the protocol's record: the module's FIELDS, else its docs/protocols page."""

    def __init__(self) -> None:
        self._docs: dict[str, str | None] = {}

    def _doc_text(self, name: str) -> str | None:
        if name not in self._docs:
            p = DOCS / name
            self._docs[name] = p.read_text(encoding="utf-8") if p.exists() else None
        return self._docs[name]

    def _known(self, kind: str) -> tuple[set[str] | None, str | None]:
        """(declared FIELDS or None, doc text or None) of one event kind."""
        if kind == "weird":
            return WEIRD_FIELDS, None
        if kind == "flow":
            return FLOW_FIELDS, None
        if kind == "alert":
            return set(ALERT_FIELDS), None
        src = KIND_SOURCES.get(kind)
        if src is None:
            return None, None
        mod_name, doc = src
        declared = None
        try:
            mod = importlib.import_module(mod_name)
            fields = getattr(mod, "FIELDS", None)
            if isinstance(fields, dict):
                declared = set(fields)
        except ImportError:
            pass
        return declared, self._doc_text(doc)

    def check(self, doc):
        kinds = rule_kinds(doc)
        for loc, path in field_paths(doc):
            parts = path.split(".")
            if parts[0] != "fields" or len(parts) < 2:
                continue
            name = parts[1].removesuffix("[]")
            if name in COMMON_FIELDS:
                continue
            verdicts = []
            for kind in sorted(kinds):
                declared, text = self._known(kind)
                if declared is not None:
                    verdicts.append("ok" if name in declared else f"not in FIELDS of {kind}")
                elif text is not None:
                    verdicts.append("ok" if re.search(rf"\b{re.escape(name)}\b", text)
                                    else f"not documented in docs/protocols for {kind}")
                else:
                    verdicts.append(f"no FIELDS or docs/protocols page for {kind}")
            if not verdicts or "ok" in verdicts:
                continue
            declared_somewhere = any(v.startswith("not in FIELDS") for v in verdicts)
            yield doc.issue(self, ERROR if declared_somewhere and len(kinds) == 1 else WARNING,
                            f"field {path!r}: {'; '.join(verdicts)}",
                            "check the spelling against the sensor module's FIELDS / docs/protocols page",
                            loc)


class HasExamples(Check):
    def check(self, doc):
        if not doc.model.examples:
            yield doc.issue(self, ERROR, "no positive example",
                            "add `examples: [{pcap: <capture>, frames: [...]}]` (a shared capture or one "
                            "generated in tests/data/pcaps)", ("id",))
        if not doc.model.negative:
            yield doc.issue(self, INFO, "no negative example",
                            "add `negative: [{pcap: <normal capture>}]` to prove the rule stays silent")
        for key in ("examples", "negative"):
            for i, ex in enumerate(getattr(doc.model, key)):
                if resolve_pcap(ex.pcap) is None:
                    yield doc.issue(self, WARNING, f"capture {ex.pcap!r} not found",
                                    "paths are relative to ../shared/pcaps or tests/data/pcaps",
                                    (key, i, "pcap"))


class ChineseTitle(Check):
    def check(self, doc):
        zh = doc.model.title.zh
        if not zh.strip():
            yield doc.issue(self, ERROR, "missing Chinese title (title.zh)",
                            "operators and regulator reports read Chinese: add title.zh", ("title",))
        elif not re.search(r"[\u4e00-\u9fff]", zh):
            yield doc.issue(self, WARNING, f"title.zh {zh!r} has no Chinese characters",
                            "write the title in Chinese", ("title", "zh"))


class WindowHasBy(Check):
    def check(self, doc):
        for key in ("count", "sequence"):
            spec = doc.data.get(key)
            if isinstance(spec, dict) and not spec.get("by"):
                yield doc.issue(self, WARNING, f"{key} window without `by`: every event of every host shares "
                                               "one window", "group by the hosts, e.g. by: [src.ip, dst.ip]",
                                (key,))


CHECKS: tuple[type[Check], ...] = (
    IdMatchesFileName, FolderMatchesProtocol, DuplicateId, UnknownReference, ConditionCompiles, RegexCompiles,
    DocumentedField, HasExamples, ChineseTitle, WindowHasBy)


def resolve_pcap(rel: str) -> Path | None:
    """A rule example's capture: tests/data/pcaps/<rel>, else ../shared/pcaps/<rel> (None if neither)."""
    for base in (ROOT / "tests" / "data" / "pcaps", ROOT.parent / "shared" / "pcaps"):
        p = base / rel
        if p.exists():
            return p
    return None


def lint_paths(files: Iterable[Path], lists: dict[str, list[str]] | None = None) -> list[LintIssue]:
    """Run every check over rule files; schema errors become issues too."""
    checks = [c() for c in CHECKS]
    issues: list[LintIssue] = []
    for p in files:
        try:
            data, node = compose(p.read_text(encoding="utf-8"), p)
        except InvalidRule as e:
            issues.append(LintIssue(ERROR, "Schema", None, str(p), e.msg, "fix the YAML syntax", e.line))
            continue
        if not isinstance(data, dict):
            issues.append(LintIssue(ERROR, "Schema", None, str(p), "a rule file holds one mapping", "", 1))
            continue
        try:
            model = RuleModel.model_validate(data)
        except ValidationError as e:
            rid = data.get("id") if isinstance(data.get("id"), str) else None
            for err in ruleset._pydantic_errors(e, p, node):
                issues.append(LintIssue(ERROR, "Schema", rid, str(p), err.msg, "see docs/rules.md", err.line))
            continue
        doc = RuleDoc(p, data, node, model, dict(lists or {}))
        for c in checks:
            issues.extend(c.check(doc))
    for c in checks:
        issues.extend(c.finalize())
    return issues


def lint_dir(directory: str | Path = ruleset.RULES_DIR) -> list[LintIssue]:
    """Lint every rule under `directory` (with its lists.yml)."""
    d = Path(directory)
    lists: dict[str, list[str]] = {}
    issues: list[LintIssue] = []
    if (d / ruleset.LISTS_FILE).exists():
        try:
            lists = ruleset.load_lists(d / ruleset.LISTS_FILE)
        except InvalidRuleSet as e:
            issues.extend(LintIssue(ERROR, "Lists", None, x.path, x.msg, "", x.line) for x in e.errors)
        except InvalidRule as e:
            issues.append(LintIssue(ERROR, "Lists", None, e.path, e.msg, "", e.line))
    return issues + lint_paths(ruleset.rule_files(d), lists)


def main(argv: list[str] | None = None) -> int:
    """`python -m detect.lint [DIR] [--quiet]`: print issues; exit 1 when any is an error."""
    args = list(sys.argv[1:] if argv is None else argv)
    quiet = "--quiet" in args
    args = [a for a in args if a != "--quiet"]
    directory = args[0] if args else ruleset.RULES_DIR
    issues = lint_dir(directory)
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    for i in sorted(issues, key=lambda x: (order[x.severity], x.file, x.line or 0)):
        if quiet and i.severity == INFO:
            continue
        print(i)
    n = {s: sum(1 for i in issues if i.severity == s) for s in order}
    print(f"{len(ruleset.rule_files(directory))} rules: {n[ERROR]} errors, {n[WARNING]} warnings, "
          f"{n[INFO]} info", file=sys.stderr)
    return 1 if n[ERROR] else 0


if __name__ == "__main__":
    sys.exit(main())
