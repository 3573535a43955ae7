"""The rule matcher: compiled conditions, `evaluate(condition, event) -> Result`, and the streaming engine.

A condition is data (YAML) compiled once into a small tree of nodes:

    {all: [c, ...]} | {any: [c, ...]} | {not: c} | {field: <path>, <operator>: <argument>}

`<path>` is an event field by dotted path (`kind`, `src.ip`, `fields.func`, `fields.items[].area`); `[]`
expands a list, and a list-valued leaf is matched element by element (any-match). The operators are a
closed registry (`OPERATORS`): adding one = one `Operator` subclass + one entry + matcher fixtures.

`evaluate` is pure and returns a `Result` that is truthy when the condition holds and keeps its children,
so an alert can say WHY it fired. The hot path (`Node.test`) returns a bare bool; `evaluate` runs only
when a rule fired. `RuleEngine` adds the stateful part (counts within windows, ordered sequences) with
bounded state, and turns matches into alert events (detect/alerts.py).
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from icsight.events import Event

if TYPE_CHECKING:
    from detect.ruleset import Rule

ENVELOPE = {
    "id": None, "ts": None, "kind": None, "tenant": None, "sensor": None, "action": None,
    "src": ("ip", "port", "mac"), "dst": ("ip", "port", "mac"), "origin": ("capture", "frames"),
    "fields": "*",
}

MAX_KEYS = 10_000        # group keys kept per windowed rule; the least recently seen is dropped beyond
MAX_EVIDENCE = 1_000     # events kept as evidence of one window / sequence


class ConditionError(ValueError):
    """A condition is malformed; `loc` is the path inside the condition (keys and list indexes)."""

    def __init__(self, loc: Sequence[str | int], msg: str) -> None:
        self.loc, self.msg = tuple(loc), msg
        super().__init__(msg)


# ---------------------------------------------------------------- field paths


@lru_cache(maxsize=4096)
def parse_path(path: str) -> tuple[tuple[str, bool], ...]:
    """`fields.items[].area` -> (("fields", False), ("items", True), ("area", False)).

    :raise ValueError: empty segment, or a first segment that is not an envelope field.
    """
    if not isinstance(path, str) or not path:
        raise ValueError("field path must be a non-empty string")
    segs = []
    for part in path.split("."):
        expand = part.endswith("[]")
        name = part[:-2] if expand else part
        if not name:
            raise ValueError(f"empty segment in field path {path!r}")
        segs.append((name, expand))
    head = segs[0][0]
    if head not in ENVELOPE:
        raise ValueError(f"unknown event field {head!r} in {path!r} (envelope: {', '.join(ENVELOPE)})")
    sub = ENVELOPE[head]
    if sub is None and len(segs) > 1:
        raise ValueError(f"{head!r} has no sub-fields ({path!r})")
    if isinstance(sub, tuple) and (len(segs) != 2 or segs[1][0] not in sub):
        raise ValueError(f"{path!r}: {head} has only {', '.join(sub)}")
    if sub == "*" and len(segs) < 2:
        raise ValueError(f"{path!r}: name a protocol field, e.g. fields.func")
    return tuple(segs)


def resolve(event: Any, segs: tuple[tuple[str, bool], ...]) -> list[Any]:
    """Every value at a path (several when a list is expanded); missing/None values are left out."""
    cur = [event]
    for name, expand in segs:
        nxt = []
        for v in cur:
            if isinstance(v, Mapping):
                c = v.get(name)
            else:
                c = getattr(v, name, None)
            if c is None:
                continue
            if expand and isinstance(c, list | tuple):
                nxt.extend(x for x in c if x is not None)
            else:
                nxt.append(c)
        if not nxt:
            return nxt
        cur = nxt
    out = []
    for v in cur:           # a list-valued leaf is matched element by element
        if isinstance(v, list | tuple):
            out.extend(x for x in v if x is not None)
        else:
            out.append(v)
    return out


def key_of(event: Any, paths: Sequence[tuple[tuple[str, bool], ...]]) -> tuple:
    """The group key of an event: the first value of each `by` path (None when missing)."""
    out = []
    fast = type(event) is Event
    for segs in paths:
        if fast and len(segs) == 2 and segs[0][0] in ("src", "dst") and not segs[1][1]:
            out.append(getattr(getattr(event, segs[0][0]), segs[1][0]))     # src.ip, dst.port ...
            continue
        v = resolve(event, segs)
        x = v[0] if v else None
        out.append(x if isinstance(x, str | int | float | bool) or x is None else repr(x))
    return tuple(out)


# ---------------------------------------------------------------- operators


class Operator:
    """One leaf operator: `compile` checks and prepares the YAML argument, `test` checks one value."""

    name = "?"
    en = "?"          # "field <en> arg" in explanations
    zh = "?"

    def compile(self, arg: Any, lists: Mapping[str, list[str]]) -> Any:
        return arg

    def test(self, value: Any, arg: Any) -> bool:
        raise NotImplementedError

    def show(self, arg: Any) -> str:
        return repr(arg) if not isinstance(arg, str) else arg


def _same(a: Any, b: Any) -> bool:
    """Equality without Python's True == 1 (a YAML `true` must not match the integer 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


class Equals(Operator):
    name, en, zh = "equals", "equals", "等于"

    def compile(self, arg, lists):
        if isinstance(arg, list | dict):
            raise ValueError("equals takes one scalar; use `in` for several values")
        return arg

    def test(self, value, arg):
        return _same(value, arg)


class In(Operator):
    name, en, zh = "in", "in", "属于"

    def compile(self, arg, lists):
        if not isinstance(arg, list) or not arg:
            raise ValueError("in takes a non-empty list")
        return tuple(arg)

    def test(self, value, arg):
        return any(_same(value, a) for a in arg)

    def show(self, arg):
        return "[" + ", ".join(map(str, arg)) + "]"


class Range(Operator):
    name, en, zh = "range", "in range", "在范围"

    def compile(self, arg, lists):
        if not isinstance(arg, dict) or not arg or set(arg) - {"min", "max"}:
            raise ValueError("range takes {min: N, max: N} (either may be left out)")
        for k, v in arg.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"range {k} must be a number")
        return (arg.get("min"), arg.get("max"))

    def test(self, value, arg):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        lo, hi = arg
        return (lo is None or value >= lo) and (hi is None or value <= hi)

    def show(self, arg):
        lo, hi = arg
        return f"[{'' if lo is None else lo}, {'' if hi is None else hi}]"


class Regex(Operator):
    name, en, zh = "regex", "matches", "匹配正则"

    def compile(self, arg, lists):
        if not isinstance(arg, str):
            raise ValueError("regex takes a string")
        try:
            return re.compile(arg)
        except re.error as e:
            raise ValueError(f"regex does not compile: {e}") from e

    def test(self, value, arg):
        return isinstance(value, str) and arg.search(value) is not None

    def show(self, arg):
        return f"/{arg.pattern}/"


class Exists(Operator):
    name, en, zh = "exists", "exists", "存在"
    # handled in Leaf (it looks at the whole value list, not one value)

    def compile(self, arg, lists):
        if not isinstance(arg, bool):
            raise ValueError("exists takes true or false")
        return arg

    def test(self, value, arg):  # pragma: no cover - Leaf handles exists
        return True


@lru_cache(maxsize=65536)
def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _networks(items: Iterable[Any]) -> tuple:
    nets = []
    for s in items:
        try:
            nets.append(ipaddress.ip_network(str(s), strict=False))
        except ValueError as e:
            raise ValueError(f"not an address or network: {s!r}") from e
    return tuple(nets)


def _in_networks(value: Any, nets: tuple) -> bool:
    if not isinstance(value, str):
        return False
    ip = _ip(value)
    return ip is not None and any(ip.version == n.version and ip in n for n in nets)


class Cidr(Operator):
    name, en, zh = "cidr", "in network", "属于网段"

    def compile(self, arg, lists):
        items = arg if isinstance(arg, list) else [arg]
        if not items:
            raise ValueError("cidr takes a network or a list of networks")
        return _networks(items)

    def test(self, value, arg):
        return _in_networks(value, arg)

    def show(self, arg):
        return ", ".join(map(str, arg))


class InList(Operator):
    """Membership in a named list of the rules config (`rules/lists.yml`); entries may be networks."""

    name, en, zh = "in_list", "in list", "属于名单"

    def compile(self, arg, lists):
        if not isinstance(arg, str):
            raise ValueError("in_list takes the name of a list in lists.yml")
        if arg not in lists:
            raise ValueError(f"unknown list {arg!r} (known: {', '.join(sorted(lists)) or 'none'})")
        entries = lists[arg]
        exact = frozenset(str(x) for x in entries if "/" not in str(x))
        nets = _networks(x for x in entries if "/" in str(x))
        return (arg, exact, nets)

    def test(self, value, arg):
        _, exact, nets = arg
        return str(value) in exact or (bool(nets) and _in_networks(value, nets))

    def show(self, arg):
        return arg[0]


class StartsWith(Operator):
    name, en, zh = "startswith", "starts with", "前缀为"

    def compile(self, arg, lists):
        items = arg if isinstance(arg, list) else [arg]
        if not items or not all(isinstance(x, str) for x in items):
            raise ValueError("startswith takes a string or a list of strings")
        return tuple(items)

    def test(self, value, arg):
        return isinstance(value, str) and value.startswith(arg)

    def show(self, arg):
        return ", ".join(arg)


OPERATORS: dict[str, Operator] = {op.name: op for op in (
    Equals(), In(), Range(), Regex(), Exists(), Cidr(), InList(), StartsWith())}


# ---------------------------------------------------------------- condition nodes


@dataclass(slots=True)
class Result:
    """Outcome of a condition on one event: truthy when it holds; `children` say why."""

    ok: bool
    node: Node
    values: tuple = ()                  # leaf: the values seen at the field path
    children: list[Result] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok

    def leaves(self) -> list[Result]:
        """The leaf results that decided the outcome (true ones for a true node, false for false)."""
        if not self.children:
            return [self]
        out: list[Result] = []
        for c in self.children:
            if isinstance(self.node, Not) or c.ok == self.ok:
                out.extend(c.leaves())
        return out


class Node:
    """A compiled condition."""

    __slots__ = ()

    def test(self, event: Any) -> bool:
        raise NotImplementedError

    def evaluate(self, event: Any) -> Result:
        raise NotImplementedError

    def kinds(self) -> frozenset[str] | None:
        """Event kinds this condition can match (None = any): lets the engine skip rules per kind."""
        return None


def _fast_getter(segs: tuple[tuple[str, bool], ...]) -> Any:
    """A direct accessor for the common paths of an `Event` (`kind`, `src.ip`, `fields.func`), or None."""
    if any(expand for _, expand in segs) or len(segs) > 2:
        return None
    if len(segs) == 1:
        name = segs[0][0]
        return lambda e: getattr(e, name)
    a, b = segs[0][0], segs[1][0]
    if a == "fields":
        return lambda e: e.fields.get(b)
    return lambda e: getattr(getattr(e, a), b)


class Leaf(Node):
    __slots__ = ("arg", "exists", "get", "op", "path", "segs", "t")

    def __init__(self, path: str, op: Operator, arg: Any) -> None:
        self.path, self.op, self.arg = path, op, arg
        self.segs = parse_path(path)
        self.get = _fast_getter(self.segs)
        self.t = op.test
        self.exists = op.name == "exists"

    def values(self, event: Any) -> list[Any]:
        """The values at the path (see `resolve`), through the direct accessor when there is one."""
        if self.get is None or type(event) is not Event:
            return resolve(event, self.segs)
        v = self.get(event)
        if v is None:
            return []
        if isinstance(v, list | tuple):
            return [x for x in v if x is not None]
        return [v]

    def test(self, event):
        if self.get is not None and type(event) is Event:   # hot path: no list for scalar values
            v = self.get(event)
            if v is None:
                return self.exists and not self.arg
            if not isinstance(v, list | tuple):
                return self.arg if self.exists else self.t(v, self.arg)
        values = self.values(event)
        if self.exists:
            return bool(values) == self.arg
        t, arg = self.t, self.arg
        return any(t(v, arg) for v in values)

    def evaluate(self, event):
        values = self.values(event)
        if self.exists:
            return Result(bool(values) == self.arg, self, tuple(values))
        t, arg = self.t, self.arg
        hits = tuple(v for v in values if t(v, arg))
        return Result(bool(hits), self, hits or tuple(values))

    def kinds(self):
        if self.path == "kind":
            if self.op.name == "equals":
                return frozenset([self.arg])
            if self.op.name == "in":
                return frozenset(self.arg)
        return None

    def describe(self, lang: str = "en") -> str:
        word = self.op.zh if lang == "zh" else self.op.en
        if self.op.name == "exists":
            if lang == "zh":
                return f"{self.path} {'存在' if self.arg else '不存在'}"
            return f"{self.path} {'exists' if self.arg else 'is absent'}"
        return f"{self.path} {word} {self.op.show(self.arg)}"


class All(Node):
    __slots__ = ("items",)

    def __init__(self, items: list[Node]) -> None:
        self.items = items

    def test(self, event):
        for n in self.items:  # noqa: SIM110 - a plain loop is ~2x faster than all(<genexpr>) here
            if not n.test(event):
                return False
        return True

    def evaluate(self, event):
        children = []
        for n in self.items:
            r = n.evaluate(event)
            children.append(r)
            if not r:
                return Result(False, self, (), children)
        return Result(True, self, (), children)

    def kinds(self):
        out = None
        for n in self.items:
            k = n.kinds()
            if k is not None:
                out = k if out is None else out & k
        return out


class Any_(Node):
    __slots__ = ("items",)

    def __init__(self, items: list[Node]) -> None:
        self.items = items

    def test(self, event):
        for n in self.items:  # noqa: SIM110 - hot path, see All.test
            if n.test(event):
                return True
        return False

    def evaluate(self, event):
        children = []
        for n in self.items:
            r = n.evaluate(event)
            children.append(r)
            if r:
                return Result(True, self, (), children)
        return Result(False, self, (), children)

    def kinds(self):
        out: set[str] = set()
        for n in self.items:
            k = n.kinds()
            if k is None:
                return None
            out |= k
        return frozenset(out)


class Not(Node):
    __slots__ = ("item",)

    def __init__(self, item: Node) -> None:
        self.item = item

    def test(self, event):
        return not self.item.test(event)

    def evaluate(self, event):
        r = self.item.evaluate(event)
        return Result(not r.ok, self, (), [r])


def compile_condition(data: Any, lists: Mapping[str, list[str]] | None = None,
                      loc: tuple[str | int, ...] = ()) -> Node:
    """Compile a YAML condition into a Node.

    :raise ConditionError: with `loc`, the path to the offending part inside `data`.
    """
    lists = lists or {}
    if not isinstance(data, dict) or not data:
        raise ConditionError(loc, "a condition is a mapping: all / any / not / {field, <operator>}")
    keys = set(data)
    for comb in ("all", "any"):
        if comb in keys:
            if len(keys) != 1:
                raise ConditionError(loc, f"`{comb}` must be alone in its mapping (got {sorted(keys)})")
            items = data[comb]
            if not isinstance(items, list) or not items:
                raise ConditionError((*loc, comb), f"`{comb}` takes a non-empty list of conditions")
            nodes = [compile_condition(c, lists, (*loc, comb, i)) for i, c in enumerate(items)]
            return All(nodes) if comb == "all" else Any_(nodes)
    if "not" in keys:
        if len(keys) != 1:
            raise ConditionError(loc, f"`not` must be alone in its mapping (got {sorted(keys)})")
        return Not(compile_condition(data["not"], lists, (*loc, "not")))
    if "field" not in keys:
        raise ConditionError(loc, f"unknown condition keys {sorted(keys)}: use all / any / not / field")
    ops = keys - {"field"}
    if len(ops) != 1:
        raise ConditionError(loc, f"a field condition takes exactly one operator of "
                                  f"{', '.join(OPERATORS)} (got {sorted(ops) or 'none'})")
    (name,) = ops
    op = OPERATORS.get(name)
    if op is None:
        raise ConditionError((*loc, name), f"unknown operator {name!r} (known: {', '.join(OPERATORS)})")
    try:
        parse_path(data["field"])
    except ValueError as e:
        raise ConditionError((*loc, "field"), str(e)) from e
    try:
        arg = op.compile(data[name], lists)
    except ValueError as e:
        raise ConditionError((*loc, name), str(e)) from e
    return Leaf(data["field"], op, arg)


def evaluate(condition: Node, event: Any) -> Result:
    """Evaluate a compiled condition on one event (pure): a truthy Result that explains itself."""
    return condition.evaluate(event)


def explain(result: Result) -> dict[str, str]:
    """A short human explanation of a Result in Chinese and English: the leaves that decided it."""
    en, zh = [], []
    decided = [lf for lf in result.leaves() if isinstance(lf.node, Leaf)]
    if any(lf.node.path != "kind" for lf in decided):    # the event kind adds nothing to the reason
        decided = [lf for lf in decided if lf.node.path != "kind"]
    for leaf in decided:
        node = leaf.node
        seen = ", ".join(_short(v) for v in leaf.values[:5]) or "-"
        negated = _under_not(result, leaf)
        en.append(f"{'NOT ' if negated else ''}{node.describe('en')} (saw {seen})")
        zh.append(f"{'非 ' if negated else ''}{node.describe('zh')}（实际值 {seen}）")
    return {"en": "; ".join(en), "zh": "；".join(zh)}


def _under_not(root: Result, leaf: Result) -> bool:
    """True when `leaf` sits under an odd number of `not` nodes of `root`."""

    def walk(r: Result, depth: int) -> int | None:
        if r is leaf:
            return depth
        for c in r.children:
            d = walk(c, depth + isinstance(r.node, Not))
            if d is not None:
                return d
        return None

    d = walk(root, 0)
    return bool(d and d % 2)


def _short(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."


# ---------------------------------------------------------------- streaming engine


@dataclass(slots=True)
class Match:
    """A rule fired: the triggering event, every evidence event, and the explanation."""

    rule: Rule
    event: Event
    evidence: list[Event]
    group: dict[str, Any]
    count: int
    reason: dict[str, str] | None = None      # built lazily: suppressed matches never need it
    explain_fn: Any = None

    def explained(self) -> Match:
        if self.reason is None:
            self.reason = self.explain_fn()
        return self


class _Window:
    """Events of one group key inside a sliding time window (count / distinct count)."""

    __slots__ = ("distinct", "items")

    def __init__(self) -> None:
        self.items: deque[tuple[float, Event, Any]] = deque()
        self.distinct: dict[Any, int] = {}

    def add(self, ts: float, ev: Event, value: Any) -> None:
        self.items.append((ts, ev, value))
        if value is not None:
            self.distinct[value] = self.distinct.get(value, 0) + 1
        if len(self.items) > MAX_EVIDENCE:
            self._pop()

    def _pop(self) -> None:
        _, _, v = self.items.popleft()
        if v is not None:
            n = self.distinct[v] - 1
            if n:
                self.distinct[v] = n
            else:
                del self.distinct[v]

    def expire(self, cutoff: float) -> None:
        while self.items and self.items[0][0] < cutoff:
            self._pop()


class RuleEngine:
    """Streaming matcher over events in capture-time order: `process(event) -> list[alert Event]`.

    State is bounded: windows and partial sequences expire by event time, at most MAX_KEYS group keys
    per rule are kept (least recently used dropped), at most MAX_EVIDENCE events per window. The same
    rule + group key does not alert again within the rule's suppression window (event time); those
    matches are counted in `suppressed`.
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        from detect.alerts import AlertBuilder

        self.rules = list(rules)
        self.by_kind: dict[str, list[Rule]] = {}
        self.any_kind: list[Rule] = []
        for r in self.rules:
            ks = r.kinds()
            if ks is None:
                self.any_kind.append(r)
            else:
                for k in ks:
                    self.by_kind.setdefault(k, []).append(r)
        self.windows: dict[str, OrderedDict[tuple, Any]] = {r.id: OrderedDict() for r in self.rules}
        self.last_alert: dict[tuple[str, tuple], float] = {}
        self.suppressed = 0
        self.matches = 0
        self.builder = AlertBuilder()

    def _candidates(self, kind: str) -> list[Rule]:
        got = self.by_kind.get(kind)
        if not self.any_kind:
            return got or []
        return (got or []) + self.any_kind

    def process(self, event: Event) -> list[Event]:
        """Feed one event; returns the alert events it triggers (usually none)."""
        if event.kind == "alert":
            return []
        out = []
        for rule in self._candidates(event.kind):
            m = self._step(rule, event)
            if m is None:
                continue
            self.matches += 1
            sk = (rule.id, tuple(m.group.values()))
            last = self.last_alert.get(sk)
            if last is not None and rule.suppress > 0 and event.ts - last < rule.suppress:
                self.suppressed += 1
                continue
            self.last_alert[sk] = event.ts
            if len(self.last_alert) > MAX_KEYS * 4:
                self._prune_alerts(event.ts)
            out.append(self.builder.build(m.explained()))
        return out

    def run(self, events: Iterable[Event]) -> list[Event]:
        """All alerts for a stream of events."""
        out: list[Event] = []
        for e in events:
            out.extend(self.process(e))
        return out

    def _prune_alerts(self, now: float) -> None:
        horizon = max((r.suppress for r in self.rules), default=60.0)
        self.last_alert = {k: t for k, t in self.last_alert.items() if now - t < horizon}

    def _state(self, rule: Rule, key: tuple, factory: Any) -> Any:
        states = self.windows[rule.id]
        st = states.get(key)
        if st is None:
            st = states[key] = factory()
            if len(states) > MAX_KEYS:
                states.popitem(last=False)
        else:
            states.move_to_end(key)
        return st

    def _step(self, rule: Rule, event: Event) -> Match | None:
        if rule.sequence is not None:
            return self._step_sequence(rule, event)
        if rule.match is not None and not rule.match.test(event):
            return None
        if rule.count is None:
            group = dict(zip(rule.group_by, key_of(event, rule.group_segs), strict=True))
            return Match(rule, event, [event], group, 1, None, lambda: explain(rule.match.evaluate(event)))
        c = rule.count
        key = key_of(event, c.by_segs)
        win = self._state(rule, key, _Window)
        win.expire(event.ts - c.within)
        value = None
        if c.distinct_segs is not None:
            vals = resolve(event, c.distinct_segs)
            if not vals:
                return None
            value = vals[0] if isinstance(vals[0], str | int | float | bool) else repr(vals[0])
        win.add(event.ts, event, value)
        n = len(win.distinct) if c.distinct_segs is not None else len(win.items)
        if n < c.gte:
            return None
        evidence = [e for _, e, _ in win.items]
        group = dict(zip(c.by, key, strict=True))
        self.windows[rule.id].pop(key, None)      # start a fresh window after firing
        return Match(rule, event, evidence, group, n, None, lambda: _count_reason(rule, event, n, group))

    def _step_sequence(self, rule: Rule, event: Event) -> Match | None:
        s = rule.sequence
        if rule.match is not None and not rule.match.test(event):
            return None
        hits = [i for i, step in enumerate(s.steps) if step.test(event)]
        if not hits:
            return None
        key = key_of(event, s.by_segs)
        chains: dict[int, tuple[float, list[Event]]] = self._state(rule, key, dict)
        cutoff = event.ts - s.within
        for i in [i for i, (t0, _) in chains.items() if t0 < cutoff]:
            del chains[i]
        last = len(s.steps) - 1
        for i in sorted(hits, reverse=True):     # an event never advances two steps of one chain
            if i == 0:
                chains[0] = (event.ts, [event])
            elif (i - 1) in chains:
                t0, evs = chains[i - 1]
                if i == last:
                    evidence = [*evs, event]
                    self.windows[rule.id].pop(key, None)
                    group = dict(zip(s.by, key, strict=True))
                    en, zh = [], []
                    for j, (step, ev) in enumerate(zip(s.steps, evidence, strict=True)):
                        x = explain(step.evaluate(ev))
                        en.append(f"step {j + 1} frame {_frames(ev)}: {x['en']}")
                        zh.append(f"第 {j + 1} 步 帧 {_frames(ev)}：{x['zh']}")
                    span = event.ts - t0
                    reason = {"en": f"sequence of {len(evidence)} steps in {span:.3f} s "
                                    f"(within {s.within:g} s): " + " -> ".join(en),
                              "zh": f"{s.within:g} 秒内按序出现 {len(evidence)} 步（用时 {span:.3f} 秒）："
                                    + " -> ".join(zh)}
                    return Match(rule, event, evidence, group, len(evidence), reason)
                chains[i] = (t0, [*evs, event])
        return None


def _count_reason(rule: Rule, event: Event, n: int, group: dict[str, Any]) -> dict[str, str]:
    """Why a counting rule fired: how many (distinct) in which window for which key, and the last event."""
    c = rule.count
    last = explain(rule.match.evaluate(event)) if rule.match is not None else {"en": "", "zh": ""}
    what_en = f"{n} distinct {c.distinct}" if c.distinct else f"{n} matching events"
    what_zh = f"{n} 个不同的 {c.distinct}" if c.distinct else f"{n} 个匹配事件"
    by = ", ".join(f"{k}={v}" for k, v in group.items()) or "all traffic"
    return {
        "en": f"{what_en} within {c.within:g} s (threshold {c.gte}) for {by}"
              + (f"; last: {last['en']}" if last["en"] else ""),
        "zh": f"{c.within:g} 秒内 {what_zh}（阈值 {c.gte}），分组 {by}"
              + (f"；最后一个：{last['zh']}" if last["zh"] else ""),
    }


def _frames(ev: Event) -> str:
    return ",".join(map(str, ev.origin.frames)) or "-"


def match(rules: Iterable[Rule], events: Iterable[Event]) -> list[Event]:
    """All alerts of `rules` over `events` (a fresh engine: no state shared between calls)."""
    return RuleEngine(rules).run(events)
