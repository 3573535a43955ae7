"""Rule schema (pydantic, `extra="forbid"`) and loader: YAML files -> validated, compiled `Rule`s.

One rule per file, named after its kebab-case `id`, in folders by protocol (`rules/<protocol>/<id>.yml`).
`rules/lists.yml` (top-level `lists:`) holds named lists (engineering hosts, IEC 104 masters ...) that
conditions use with `in_list`. Errors name the file AND the line: the YAML is composed with its node
marks and a pydantic / condition error location is mapped back to the node it points at. Loading a
directory collects every error before raising (`InvalidRuleSet`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from detect.engine import MAX_EVIDENCE, ConditionError, Node, compile_condition, parse_path
from icsight.errors import ConfigError

REFDATA = Path(__file__).resolve().parent / "refdata"
RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
LISTS_FILE = "lists.yml"

SEVERITIES = ("info", "low", "medium", "high", "critical")
PROTOCOLS = ("modbus", "s7comm", "dnp3", "iec104", "enip", "opcua", "bacnet", "mqtt", "goose", "mms",
             "profinet_dcp", "omron_fins", "network")
ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
DEFAULT_SUPPRESS = 60.0


class InvalidRule(ConfigError):
    """A rule (or lists) file is invalid: names the file and, where known, the line."""

    def __init__(self, path: str | Path, msg: str, line: int | None = None) -> None:
        self.path, self.msg, self.line = str(path), msg, line
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {msg}")


class InvalidRuleSet(InvalidRule):
    """Several rule files are invalid; `errors` holds every one."""

    def __init__(self, errors: Sequence[InvalidRule]) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.path, first.msg, first.line)
        self.args = ("\n".join(str(e) for e in self.errors),)

    def __str__(self) -> str:
        return self.args[0]


# ---------------------------------------------------------------- reference data


@cache
def refdata(name: str) -> dict[str, Any]:
    """One reference data file of detect/refdata (ATT&CK for ICS, GB/T 20986, GB/T 22239)."""
    with open(REFDATA / name, encoding="utf-8") as f:
        return yaml.safe_load(f)


def techniques() -> dict[str, Any]:
    return refdata("attack_ics.yml")["techniques"]


def categories() -> set[str]:
    """Every valid `category`: "类别" or "类别/子类" (vendor-extension rows included, flagged in the file)."""
    d = refdata("gbt20986.yml")
    out = set()
    for cat, v in d["categories"].items():
        out.add(cat)
        out.update(f"{cat}/{s}" for s in v["sub"])
    for cat, subs in d.get("vendor_extensions", {}).items():
        out.update(f"{cat}/{s}" for s in subs)
    return out


def controls() -> dict[str, Any]:
    return refdata("gbt22239_controls.yml")["controls"]


# ---------------------------------------------------------------- schema


def parse_duration(v: Any) -> float:
    """`10s`, `500ms`, `5m`, `1h` or a number of seconds -> seconds."""
    if isinstance(v, bool):
        raise ValueError("a duration is a number of seconds or a string like 10s, 500ms, 5m")
    if isinstance(v, int | float):
        if v < 0:
            raise ValueError("a duration cannot be negative")
        return float(v)
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", v)
        if m:
            return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    raise ValueError(f"not a duration: {v!r} (use 10s, 500ms, 5m, 1h or seconds)")


Duration = Annotated[float, BeforeValidator(parse_duration)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Title(StrictModel):
    zh: str = ""
    en: str


class Example(StrictModel):
    pcap: str                          # relative to /work/shared/pcaps or tests/data/pcaps
    frames: list[int] = Field(min_length=1)   # the alerts' frames must include these
    alerts: int | None = Field(default=None, ge=1)   # exact number of alerts of the rule, when given


class Negative(StrictModel):
    pcap: str                          # a normal capture the rule must stay silent on


def _path(v: str) -> str:
    parse_path(v)
    return v


FieldPath = Annotated[str, AfterValidator(_path)]      # an event field by dotted path (engine.parse_path)


class CountSpec(StrictModel):
    gte: int = Field(ge=1, le=MAX_EVIDENCE)   # fire when the count reaches this (a window keeps at most
                                              # MAX_EVIDENCE events, so a higher threshold could never fire)
    within: Duration                   # sliding window, seconds of event time
    by: list[FieldPath] = []           # group key: one window per value tuple
    distinct: FieldPath | None = None  # count distinct values of this field instead of events


class SequenceSpec(StrictModel):
    steps: list[Any] = Field(min_length=2)   # conditions that must match in this order
    within: Duration                         # from the first step to the last
    by: list[FieldPath] = []


class RuleModel(StrictModel):
    """The YAML document of one rule."""

    id: str
    title: Title
    description: str
    severity: Literal["info", "low", "medium", "high", "critical"]
    protocol: Literal[PROTOCOLS]  # type: ignore[valid-type]
    techniques: list[str] = []        # MITRE ATT&CK for ICS ids (refdata/attack_ics.yml)
    category: str                     # GB/T 20986-2023 "类别" or "类别/子类" (refdata/gbt20986.yml)
    controls: list[str] = []          # GB/T 22239-2019 items by GB/T 28448 id (refdata/gbt22239_controls.yml)
    false_positives: list[str] = []
    references: list[str] = []
    match: Any = None                 # condition (see detect/engine.py)
    count: CountSpec | None = None
    sequence: SequenceSpec | None = None
    group_by: list[FieldPath] = ["src.ip", "dst.ip"]   # dedup key of rules without a window
    suppress: Duration = DEFAULT_SUPPRESS      # seconds of event time; 0 = alert on every match
    examples: list[Example] = []
    negative: list[Negative] = []

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID_RE.match(v):
            raise ValueError("id must be kebab-case: lowercase letters, digits and single hyphens")
        return v

    @field_validator("false_positives", mode="before")
    @classmethod
    def _fp(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class StrictRefsModel(RuleModel):
    """RuleModel plus the reference checks (the loader uses it; the linter reports them as issues)."""

    @field_validator("techniques")
    @classmethod
    def _techniques(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t not in techniques()]
        if bad:
            raise ValueError(f"unknown ATT&CK for ICS technique(s) {bad} (see detect/refdata/attack_ics.yml)")
        return v

    @field_validator("category")
    @classmethod
    def _category(cls, v: str) -> str:
        if v not in categories():
            raise ValueError(f"unknown GB/T 20986-2023 category {v!r} (see detect/refdata/gbt20986.yml)")
        return v

    @field_validator("controls")
    @classmethod
    def _controls(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in controls()]
        if bad:
            raise ValueError(f"unknown GB/T 22239 control(s) {bad} "
                             "(see detect/refdata/gbt22239_controls.yml)")
        return v


# ---------------------------------------------------------------- compiled rule


@dataclass(frozen=True, slots=True)
class CompiledCount:
    gte: int
    within: float
    by: tuple[str, ...]
    distinct: str | None
    by_segs: tuple
    distinct_segs: tuple | None


@dataclass(frozen=True, slots=True)
class CompiledSequence:
    steps: tuple[Node, ...]
    within: float
    by: tuple[str, ...]
    by_segs: tuple


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated rule with compiled conditions, ready for the engine."""

    model: RuleModel
    path: str
    match: Node | None
    count: CompiledCount | None
    sequence: CompiledSequence | None
    group_by: tuple[str, ...]
    group_segs: tuple

    def __getattr__(self, name: str) -> Any:      # id, title, severity ... from the model
        return getattr(object.__getattribute__(self, "model"), name)

    @property
    def id(self) -> str:
        return self.model.id

    @property
    def suppress(self) -> float:
        return self.model.suppress

    def kinds(self) -> frozenset[str] | None:
        """Event kinds the rule can fire on (None = any), for the engine's per-kind index."""
        ks = self.match.kinds() if self.match is not None else None
        if self.sequence is not None:
            step_kinds = [s.kinds() for s in self.sequence.steps]
            if all(k is not None for k in step_kinds):
                union = frozenset().union(*step_kinds)
                ks = union if ks is None else ks & union
        return ks


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    lists: Mapping[str, list[str]]

    def __iter__(self):
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


# ---------------------------------------------------------------- YAML with lines


def compose(text: str, path: str | Path) -> tuple[Any, yaml.Node | None]:
    """Parse YAML keeping the node tree (for line numbers).

    :raise InvalidRule: the text is not YAML (with the line of the syntax error).
    """
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InvalidRule(path, f"not valid YAML: {getattr(e, 'problem', e)}",
                          mark.line + 1 if mark else None) from e
    return data, node


def line_of(node: yaml.Node | None, loc: Iterable[str | int]) -> int | None:
    """The line (1-based) of the deepest node reachable along `loc` (mapping keys, list indexes)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(key):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            if nxt is None:
                return line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return node.start_mark.line + 1
    return line


def _pydantic_errors(e: ValidationError, path: str | Path, node: yaml.Node | None) -> list[InvalidRule]:
    out = []
    for err in e.errors():
        loc = [x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-"))]
        where = ".".join(str(x) for x in loc) or "(document)"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(InvalidRule(path, f"{where}: {msg}", line_of(node, loc)))
    return out


# ---------------------------------------------------------------- loading


def parse_rule(text: str, path: str | Path = "<string>", lists: Mapping[str, list[str]] | None = None,
               strict_refs: bool = True) -> Rule:
    """Validate and compile one rule document.

    :raise InvalidRule: schema or condition error, with the file and line of the offending node.
    """
    data, node = compose(text, path)
    if not isinstance(data, dict):
        raise InvalidRule(path, "a rule file holds one mapping (id, title, ...)", line_of(node, []))
    model_cls = StrictRefsModel if strict_refs else RuleModel
    try:
        model = model_cls.model_validate(data)
    except ValidationError as e:
        errs = _pydantic_errors(e, path, node)
        raise (errs[0] if len(errs) == 1 else InvalidRuleSet(errs)) from e
    return compile_rule(model, path, node, lists or {})


def compile_rule(model: RuleModel, path: str | Path, node: yaml.Node | None,
                 lists: Mapping[str, list[str]]) -> Rule:
    """Compile the conditions of a validated model.

    :raise InvalidRule: a malformed condition (line of the node), or a rule without a condition.
    """
    def cond(data: Any, loc: tuple) -> Node:
        try:
            return compile_condition(data, lists, loc)
        except ConditionError as e:
            where = ".".join(str(x) for x in e.loc)
            raise InvalidRule(path, f"{where}: {e.msg}", line_of(node, e.loc)) from e

    if model.match is None and model.sequence is None:
        raise InvalidRule(path, "a rule needs `match` (or `sequence`)", line_of(node, []))
    if model.count is not None and model.sequence is not None:
        raise InvalidRule(path, "`count` and `sequence` cannot be combined", line_of(node, ["sequence"]))
    m = cond(model.match, ("match",)) if model.match is not None else None
    cnt = None
    if model.count is not None:
        c = model.count
        cnt = CompiledCount(c.gte, c.within, tuple(c.by), c.distinct, tuple(parse_path(p) for p in c.by),
                            parse_path(c.distinct) if c.distinct else None)
    seq = None
    if model.sequence is not None:
        s = model.sequence
        steps = tuple(cond(st, ("sequence", "steps", i)) for i, st in enumerate(s.steps))
        seq = CompiledSequence(steps, s.within, tuple(s.by), tuple(parse_path(p) for p in s.by))
    group = tuple(model.group_by)
    return Rule(model, str(path), m, cnt, seq, group, tuple(parse_path(p) for p in group))


def load_lists(path: str | Path) -> dict[str, list[str]]:
    """`lists.yml`: {lists: {name: [values]}}.

    :raise InvalidRule: not a mapping of names to lists of scalars.
    """
    p = Path(path)
    data, node = compose(p.read_text(encoding="utf-8"), p)
    if not isinstance(data, dict) or set(data) != {"lists"} or not isinstance(data["lists"], dict):
        raise InvalidRule(p, "a lists file holds one mapping `lists: {name: [values]}`", line_of(node, []))
    for name, values in data["lists"].items():
        if not isinstance(values, list) or not all(isinstance(v, str | int) for v in values):
            raise InvalidRule(p, f"lists.{name}: a list of strings", line_of(node, ["lists", name]))
    return {k: [str(v) for v in vs] for k, vs in data["lists"].items()}


def rule_files(directory: str | Path) -> list[Path]:
    """Every rule file under `directory` (sorted), without the lists file."""
    d = Path(directory)
    return sorted(p for p in d.rglob("*.yml") if not (p.name == LISTS_FILE and p.parent == d))


def load_rules(directory: str | Path = RULES_DIR, lists: Mapping[str, list[str]] | None = None) -> RuleSet:
    """Load every rule under `directory` (and its `lists.yml`).

    :raise InvalidRuleSet: every invalid file and duplicate id, each with file and line.
    """
    d = Path(directory)
    errors: list[InvalidRule] = []
    merged: dict[str, list[str]] = {}
    lp = d / LISTS_FILE
    if lp.exists():
        try:
            merged.update(load_lists(lp))
        except InvalidRule as e:
            errors.append(e)
    if lists:
        merged.update(lists)
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for p in rule_files(d):
        try:
            r = parse_rule(p.read_text(encoding="utf-8"), p, merged)
        except InvalidRuleSet as e:
            errors.extend(e.errors)
            continue
        except InvalidRule as e:
            errors.append(e)
            continue
        if r.id in seen:
            _, node = compose(p.read_text(encoding="utf-8"), p)
            errors.append(InvalidRule(p, f"duplicate rule id {r.id!r} (also in {seen[r.id]})",
                                      line_of(node, ["id"])))
            continue
        seen[r.id] = str(p)
        rules.append(r)
    if errors:
        raise InvalidRuleSet(errors)
    return RuleSet(tuple(rules), merged)
