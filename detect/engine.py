"""The rule matcher: compiled conditions, `evaluate(condition, event) -> Result`, and the streaming engine.

A condition is data (YAML) compiled once into a small tree of nodes:

    {all: [c, ...]} | {any: [c, ...]} | {not: c} | {field: <path>, <operator>: <argument>}

`<path>` is an event field by dotted path (`kind`, `src.ip`, `fields.func`, `fields.items[].area`); `[]`
expands a list, and a list-valued leaf is matched element by element (any-match). The operators are a
closed registry (`OPERATORS`): adding one = one `Operator` subclass + one entry + matcher fixtures.

`evaluate` is pure and returns a `Result` that is truthy when the condition holds and keeps its children,
so an alert can say WHY it fired. The hot path returns a bare bool: `Node.test`, and in the engine one
generated function per rule (`compile_test`); `evaluate` runs only when a rule fired. `RuleEngine`
adds the stateful part (counts within windows, ordered sequences) with bounded state, and turns
matches into alert events (detect/alerts.py). It runs on every event, so it only tests the rules an
event can match: per kind, then per the value of a field each rule requires (`preconditions`, `_Plan`).
"""

from __future__ import annotations

import ipaddress
import operator
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
_SEQ = (list, tuple)     # isinstance with a tuple constant: `list | tuple` builds a union on every call
_SCALAR = (str, int, float, bool)


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
            if expand and isinstance(c, _SEQ):
                nxt.extend(x for x in c if x is not None)
            else:
                nxt.append(c)
        if not nxt:
            return nxt
        cur = nxt
    out = []
    for v in cur:           # a list-valued leaf is matched element by element
        if isinstance(v, _SEQ):
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
        out.append(x if isinstance(x, _SCALAR) or x is None else repr(x))
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


class _Networks:
    """Compiled networks of a `cidr` / `in_list` argument; the answer is memoised per address string
    (bounded), since `ipaddress` containment costs microseconds and a network shows few addresses."""

    __slots__ = ("memo", "nets")

    def __init__(self, nets: tuple) -> None:
        self.nets = nets
        self.memo: dict[str, bool] = {}

    def __contains__(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        got = self.memo.get(value)
        if got is None:
            got = _in_networks(value, self.nets)
            if len(self.memo) >= 65536:
                self.memo.clear()
            self.memo[value] = got
        return got

    def __bool__(self) -> bool:
        return bool(self.nets)

    def __str__(self) -> str:
        return ", ".join(map(str, self.nets))


class Cidr(Operator):
    name, en, zh = "cidr", "in network", "属于网段"

    def compile(self, arg, lists):
        items = arg if isinstance(arg, list) else [arg]
        if not items:
            raise ValueError("cidr takes a network or a list of networks")
        return _Networks(_networks(items))

    def test(self, value, arg):
        return value in arg

    def show(self, arg):
        return str(arg)


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
        nets = _Networks(_networks(x for x in entries if "/" in str(x)))
        return (arg, exact, nets)

    def test(self, value, arg):
        _, exact, nets = arg
        return str(value) in exact or (bool(nets) and value in nets)

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
        if isinstance(v, _SEQ):
            return [x for x in v if x is not None]
        return [v]

    def test(self, event):
        if self.get is not None and type(event) is Event:   # hot path: no list for scalar values
            v = self.get(event)
            if v is None:
                return self.exists and not self.arg
            if not isinstance(v, _SEQ):
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


# ---------------------------------------------------------------- compiled tests (the engine's hot path)

# `Node.test` walks the tree: a call per node, an accessor call and an operator call per leaf. The
# engine instead runs one generated function per rule condition, with every leaf inlined: the value
# read straight off the Event, the common operators as expressions on it. A value the inlined form
# does not decide (a list, matched element by element; an unhashable one for `in`) and any object that
# is not exactly an `Event` go back to `Node.test`, so the result is always that of `Node.test`.


def _plain(v: Any) -> bool:
    return v is None or type(v) in (str, int, float, bool)


def _get_code(segs: tuple[tuple[str, bool], ...], ns: dict[str, Any], i: int) -> str:
    """The expression of `_fast_getter(segs)` on an Event `e` (the path has a direct accessor)."""
    if len(segs) == 1:
        return f"e.{segs[0][0]}"                        # an envelope field name (parse_path checked it)
    if segs[0][0] == "fields":
        ns[f"n{i}"] = segs[1][0]
        return f"e.fields.get(n{i})"
    return f"e.{segs[0][0]}.{segs[1][0]}"               # src.ip, dst.port, origin.frames ...


def _leaf_code(leaf: Leaf, ns: dict[str, Any], i: int) -> tuple[str, str, str | None]:
    """(value expression, test expression on a scalar `v`, test for `v` None) of an inlinable leaf."""
    get = _get_code(leaf.segs, ns, i)
    op, arg = leaf.op.name, leaf.arg
    ns[f"a{i}"], ns[f"t{i}"] = arg, leaf.t
    missing = "True" if leaf.exists and not arg else "False"
    if op == "exists":
        return get, "True" if arg else "False", missing
    if op == "equals" and _plain(arg):
        if isinstance(arg, bool):
            return get, f"v is a{i}", missing
        if isinstance(arg, str):
            return get, f"v == a{i}", missing
        return get, f"(v == a{i} and type(v) is not bool)", missing
    if op == "in" and all(_plain(a) for a in arg) and not any(isinstance(a, float) and a != a for a in arg):
        nb = frozenset(a for a in arg if not isinstance(a, bool))
        ns[f"s{i}"], ns[f"b{i}"] = nb, frozenset(a for a in arg if isinstance(a, bool))
        if not ns[f"b{i}"] and all(isinstance(a, str) for a in nb):    # a bool never equals a string
            return get, f"v in s{i}", missing           # unhashable v: TypeError -> Node.test
        return get, f"(v in b{i} if type(v) is bool else v in s{i})", missing
    if op == "startswith":
        return get, f"(isinstance(v, str) and v.startswith(a{i}))", missing
    return get, f"t{i}(v, a{i})", missing


def _block(node: Node, ns: dict[str, Any], i: int, fail: str, negate: bool) -> list[str]:
    """Statements that `return fail` when `node` (negated when `negate`) is not met, else fall through."""
    if isinstance(node, Not):
        return _block(node.item, ns, i, fail, not negate)
    if isinstance(node, Leaf) and node.get is not None:
        get, expr, missing = _leaf_code(node, ns, i)
        ns[f"l{i}"] = node.test
        bad_missing = (missing == "True") == negate       # the leaf's outcome on a missing value fails
        sign = "" if negate else "not "
        return [
            f"v = {get}",
            "if v is None:",
            f"    {'return ' + fail if bad_missing else 'pass'}",
            "elif isinstance(v, SEQ):",
            f"    if {sign}l{i}(e):",
            f"        return {fail}",
            f"elif {sign}{expr}:",
            f"    return {fail}",
        ]
    ns[f"l{i}"] = compile_test(node) if isinstance(node, All | Any_) else node.test
    return [f"if {'' if negate else 'not '}l{i}(e):", f"    return {fail}"]


def compile_test(node: Node) -> Any:
    """`event -> bool`, the same as `node.test` but generated as one function (see above)."""
    ns: dict[str, Any] = {"Event": Event, "SEQ": _SEQ, "slow": node.test}
    if isinstance(node, All):
        body = [ln for i, n in enumerate(node.items) for ln in _block(n, ns, i, "False", False)]
        body.append("return True")
    elif isinstance(node, Any_):        # any: "not met" of each item falls through to the next
        body = [ln for i, n in enumerate(node.items) for ln in _block(n, ns, i, "True", True)]
        body.append("return False")
    else:
        body = [*_block(node, ns, 0, "False", False), "return True"]
    src = "\n".join([
        "def test(e):",
        "    if type(e) is not Event:",
        "        return slow(e)",
        "    try:",
        *(f"        {ln}" for ln in body),
        "    except TypeError:",       # an unhashable value in a set look-up: the tree decides
        "        return slow(e)",
    ])
    exec(compile(src, f"<rule test {id(node):x}>", "exec"), ns)    # the source is built above, no input
    return ns["test"]


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
        items, distinct = self.items, self.distinct
        while items and items[0][0] < cutoff:       # _pop, inlined
            v = items.popleft()[2]
            if v is not None:
                n = distinct[v] - 1
                if n:
                    distinct[v] = n
                else:
                    del distinct[v]


# ---------------------------------------------------------------- rule index (pre-conditions)

# A rule only needs testing on an event that can match it. Beyond the kind, the engine indexes each rule
# by one NECESSARY pre-condition "field F holds one of the values S", read off a top-level `all:` leaf
# `{field: F, equals|in: ...}` (or the match itself when it is such a leaf, or a field every branch of
# an `any:` constrains). `not` never yields one. Per kind, an event looks up the value of each indexed
# field in a dict and tests only the rules it names plus the rules without a pre-condition, in their
# original order: same alerts, same state, far fewer tests.


def _index_values(values: Iterable[Any]) -> frozenset | None:
    """The values of an equals / in leaf as index keys `(is_bool, value)`, or None when one is not a
    plain scalar. The flag keeps `true` apart from 1 (equal in a set, not to the matcher). None and
    NaN are left out: they equal nothing (a missing field fails the leaf; NaN != NaN).
    """
    out = []
    for v in values:
        if type(v) not in (str, int, float, bool, type(None)):
            return None
        if v is not None and v == v:
            out.append((type(v) is bool, v))
    return frozenset(out)


def preconditions(node: Node | None) -> dict[str, frozenset]:
    """Necessary pre-conditions of a condition: {path: values}, one of which the field must hold
    (values as `_index_values` gives them).

    Only `equals` / `in` leaves on paths with a direct accessor (no `[]`, at most two segments) other
    than `kind` qualify, and only with plain scalar values (str, int, float, bool).
    """
    if isinstance(node, Leaf):
        if node.path == "kind" or node.get is None or node.op.name not in ("equals", "in"):
            return {}
        vals = _index_values([node.arg] if node.op.name == "equals" else node.arg)
        return {} if vals is None else {node.path: vals}
    if isinstance(node, All):
        out: dict[str, frozenset] = {}
        for n in node.items:
            for p, vals in preconditions(n).items():
                out[p] = out[p] & vals if p in out else vals
        return out
    if isinstance(node, Any_):
        each = [preconditions(n) for n in node.items]
        common = set(each[0]).intersection(*each[1:])
        return {p: frozenset().union(*(e[p] for e in each)) for p in sorted(common)}
    return {}


def _strip_kind(node: Node | None, kinds: frozenset[str] | None) -> Node | None:
    """The condition minus its top-level `kind` leaves that the per-kind dispatch already guarantees.

    A rule is only run on events whose kind is in `kinds`, the intersection of those leaves; a leaf
    is dropped only when all its values are strings (`kind equals true` keeps its strict typing).
    None = nothing left to test.
    """
    if node is None or kinds is None:
        return node

    def guaranteed(n: Node) -> bool:
        if not (isinstance(n, Leaf) and n.path == "kind" and n.op.name in ("equals", "in")):
            return False
        vals = [n.arg] if n.op.name == "equals" else n.arg
        return all(isinstance(v, str) for v in vals)

    if guaranteed(node):
        return None
    if isinstance(node, All):
        rest = [n for n in node.items if not guaranteed(n)]
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else All(rest)
    return node


_PLAIN = frozenset({str, int, float, bool})


def _distinct_value(segs: tuple[tuple[str, bool], ...]) -> Any:
    """`event -> the value a distinct count counts`: the first value of `resolve(event, segs)`, kept
    when a scalar, else its repr; None when there is none. Reads an Event's field directly."""

    def slow(e: Any) -> Any:
        v = resolve(e, segs)
        if not v:
            return None
        return v[0] if isinstance(v[0], _SCALAR) else repr(v[0])

    if any(expand for _, expand in segs) or len(segs) != 2 or segs[0][0] != "fields":
        return slow
    name = segs[1][0]

    def get(e: Any) -> Any:
        if type(e) is not Event or type(e.fields) is not dict:
            return slow(e)
        v = e.fields.get(name)
        if type(v) in _PLAIN or v is None:
            return v
        return slow(e)        # a list (its first element), a subclass, another type (repr)
    return get


def _endpoint_getter(paths: Sequence[tuple[tuple[str, bool], ...]]) -> Any:
    """`attrgetter("src.ip", ...)` when every path is an endpoint field (`key_of` reads those raw from
    an Event), else None."""
    if paths and all(len(s) == 2 and s[0][0] in ("src", "dst") and not s[1][1] for s in paths):
        return operator.attrgetter(*(f"{s[0][0]}.{s[1][0]}" for s in paths))
    return None


def _key_fn(paths: Sequence[tuple[tuple[str, bool], ...]]) -> Any:
    """A compiled `key_of(event, paths)`: the same tuple, without re-reading the paths per event."""
    if not paths:
        return lambda e: ()
    get = _endpoint_getter(paths)
    if get is not None:
        if len(paths) == 1:
            def one(e: Any) -> tuple:
                return (get(e),) if type(e) is Event else key_of(e, paths)
            return one
        return lambda e: get(e) if type(e) is Event else key_of(e, paths)
    return lambda e: key_of(e, paths)


class _Plan:
    """The rules one event kind can trigger, indexed by their pre-conditions.

    `always`: entries (order, rule, step) without an indexed pre-condition; `fields`: per indexed
    field, its path, value -> entries (bool values apart: `true` must not find the rules of 1) and
    every entry of the field. `select(event)` (generated, an `Event` only) returns the step functions
    to run, in rule order; `every` those of all rules (for other objects).
    """

    __slots__ = ("always", "every", "fields", "memo", "select")

    def __init__(self, rules: list[tuple[Rule, Any]], pre: list[dict[str, frozenset]]) -> None:
        entries = [(n, rule, step) for n, (rule, step) in enumerate(rules)]
        self.every = [step for _, _, step in entries]
        self.always = [e for e in entries if not pre[e[0]]]
        self.fields: list[tuple[str, dict, dict, list]] = []
        self.memo: dict[tuple[int, ...], list[Any]] = {}
        todo = [e for e in entries if pre[e[0]]]
        while todo:       # greedy: index first by the field that the most remaining rules constrain
            counts: dict[str, int] = {}
            for e in todo:
                for p in pre[e[0]]:
                    counts[p] = counts.get(p, 0) + 1
            path = min(counts, key=lambda p: (-counts[p], p))
            eq: dict[Any, list] = {}
            bools: dict[bool, list] = {}
            every = [e for e in todo if path in pre[e[0]]]
            for e in every:
                for is_bool, v in pre[e[0]][path]:
                    (bools if is_bool else eq).setdefault(v, []).append(e)
            self.fields.append((path, eq, bools, every))
            todo = [e for e in todo if path not in pre[e[0]]]
        self.select = self._compile()

    def _compile(self) -> Any:
        always = [step for _, _, step in self.always]
        if not self.fields:
            return lambda e: always
        ns: dict[str, Any] = {"SEQ": _SEQ, "PLAIN": frozenset({str, int, float}), "always": always,
                              "merge": self._merge, "elements": self._elements}
        lines = ["def select(e):"]
        for i, (path, eq, bools, every) in enumerate(self.fields):
            ns[f"q{i}"], ns[f"b{i}"], ns[f"a{i}"] = eq, bools, every
            lines += [
                f"    v = {_get_code(parse_path(path), ns, i)}",
                "    if type(v) in PLAIN:",
                f"        h{i} = q{i}.get(v)",
                "    elif v is None:",            # a missing field fails equals / in
                f"        h{i} = None",
                "    elif v is True or v is False:",
                f"        h{i} = b{i}.get(v)",
                "    elif isinstance(v, SEQ):",   # matched element by element: the rules of any element
                f"        h{i} = elements(v, {i})",
                "    else:",                      # another type: the rules decide
                f"        h{i} = a{i}",
            ]
        hits = [f"h{i}" for i in range(len(self.fields))]
        lines += [f"    if {' is None and '.join(hits)} is None:", "        return always",
                  f"    return merge(({', '.join(hits)},))"]
        exec(compile("\n".join(lines), "<rule index>", "exec"), ns)    # the source is built above, no input
        return ns["select"]

    def _elements(self, values: Sequence[Any], i: int) -> list[tuple[int, Rule, Any]] | None:
        """The entries of field `i` that one of `values` (a list value) may match, None for none."""
        _, eq, bools, every = self.fields[i]
        got = None
        for v in values:
            if type(v) in (str, int, float):
                h = eq.get(v)
            elif v is None:
                continue
            elif v is True or v is False:
                h = bools.get(v)
            else:
                return every
            if h is not None:
                if got is not None and h is not got:
                    return every    # values of several rules: their union is left to the rules
                got = h
        return got

    def _merge(self, hits: tuple) -> list[Any]:
        """The steps of `always` and of the hit entries, in rule order (memoised per combination)."""
        key = tuple(map(id, hits))
        got = self.memo.get(key)
        if got is None:
            hit = [e for h in hits if h is not None for e in h]
            got = [step for _, _, step in sorted([*self.always, *hit], key=lambda e: e[0])]
            if len(self.memo) < 4096:
                self.memo[key] = got
        return got


class RuleEngine:
    """Streaming matcher over events in capture-time order: `process(event) -> list[alert Event]`.

    State is bounded: windows and partial sequences expire by event time, at most MAX_KEYS group keys
    per rule are kept (least recently used dropped), at most MAX_EVIDENCE events per window. The same
    rule + group key does not alert again within the rule's suppression window (event time); those
    matches are counted in `suppressed`.

    Cost: each rule is compiled to a step function, and an event runs only the rules of its kind whose
    pre-condition it meets (`_Plan`); `kind` leaves the dispatch guarantees are not re-tested.
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        from detect.alerts import AlertBuilder

        self.rules = list(rules)
        at_kind: dict[str, list[int]] = {}       # positions in self.rules of the rules of each kind
        at_any: list[int] = []                   # ... and of the rules of any kind
        kinds = [r.kinds() for r in self.rules]
        for i, ks in enumerate(kinds):
            if ks is None:
                at_any.append(i)
            else:
                for k in ks:
                    at_kind.setdefault(k, []).append(i)
        self.by_kind: dict[str, list[Rule]] = {k: [self.rules[i] for i in at] for k, at in at_kind.items()}
        self.any_kind: list[Rule] = [self.rules[i] for i in at_any]
        self.windows: dict[str, OrderedDict[tuple, Any]] = {r.id: OrderedDict() for r in self.rules}
        self.last_alert: dict[tuple[str, tuple], float] = {}
        self.suppressed = 0
        self.matches = 0
        # `muted(rule, group) -> bool`: matches the site treats as normal (detect.tuning), dropped after
        # the suppression bookkeeping and before the alert is explained and built (the hook counts them)
        self.muted: Any = None
        self.builder = AlertBuilder()
        # the index: per kind, the rules of `_candidates(kind)` in that order, with their step functions
        steps = [self._compile(r, ks) for r, ks in zip(self.rules, kinds, strict=True)]
        pre = [self._preconditions(r) for r in self.rules]

        def plan(at: list[int]) -> _Plan:
            return _Plan([(self.rules[i], steps[i]) for i in at], [pre[i] for i in at])

        self.plans = {k: plan(at + at_any) for k, at in at_kind.items()}
        self.other = plan(at_any)

    @staticmethod
    def _preconditions(rule: Rule) -> dict[str, frozenset]:
        """What any event that changes the rule's state must meet (match, else every sequence step)."""
        pre = preconditions(rule.match)
        if rule.sequence is not None:
            steps = [preconditions(s) for s in rule.sequence.steps]
            for p in set(steps[0]).intersection(*steps[1:]):
                vals = frozenset().union(*(s[p] for s in steps))
                pre[p] = pre[p] & vals if p in pre else vals
        return pre

    def _candidates(self, kind: str) -> list[Rule]:
        """Every rule an event of `kind` may trigger (before the pre-condition index)."""
        got = self.by_kind.get(kind)
        if not self.any_kind:
            return got or []
        return (got or []) + self.any_kind

    def process(self, event: Event) -> list[Event]:
        """Feed one event; returns the alert events it triggers (usually none)."""
        kind = event.kind
        if kind == "alert":
            return []
        plan = self.plans.get(kind, self.other)
        # the accessors of the index assume an Event: another object runs every rule of its kind
        steps = plan.select(event) if type(event) is Event else plan.every
        out: list[Event] = []
        for step in steps:
            m = step(event)
            if m is not None:
                self._emit(m, event, out)
        return out

    def _emit(self, m: Match, event: Event, out: list[Event]) -> None:
        """Count a match; append its alert to `out` unless the same rule + group alerted recently."""
        rule = m.rule
        self.matches += 1
        sk = (rule.id, tuple(m.group.values()))
        last = self.last_alert.get(sk)
        if last is not None and rule.suppress > 0 and event.ts - last < rule.suppress:
            self.suppressed += 1
            return
        self.last_alert[sk] = event.ts
        if len(self.last_alert) > MAX_KEYS * 4:
            self._prune_alerts(event.ts)
        if self.muted is not None and self.muted(rule, m.group):
            return
        out.append(self.builder.build(m.explained()))

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
        """One rule on one event (the uncompiled reference of `_compile`'s step functions)."""
        if rule.sequence is not None:
            return self._step_sequence(rule, event)
        if rule.match is not None and not rule.match.test(event):
            return None
        if rule.count is None:
            group = dict(zip(rule.group_by, key_of(event, rule.group_segs), strict=True))
            return Match(rule, event, [event], group, 1, None, lambda: explain(rule.match.evaluate(event)))
        return self._step_count(rule, event, key_of(event, rule.count.by_segs))

    def _compile(self, rule: Rule, kinds: frozenset[str] | None) -> Any:
        """The step function `event -> Match | None` of one rule (same result as `_step`)."""
        if rule.sequence is not None:
            return lambda event: self._step_sequence(rule, event)
        test = _strip_kind(rule.match, kinds)
        t = compile_test(test) if test is not None else None
        if rule.count is None:
            keyf = _key_fn(rule.group_segs)
            names = rule.group_by

            def single(event: Event) -> Match | None:
                if t is not None and not t(event):
                    return None
                return Match(rule, event, [event], dict(zip(names, keyf(event), strict=True)), 1, None,
                             lambda: explain(rule.match.evaluate(event)))
            return single
        c = rule.count
        keyc = _key_fn(c.by_segs)
        states = self.windows[rule.id]
        within, gte, by = c.within, c.gte, c.by
        first = _distinct_value(c.distinct_segs) if c.distinct_segs is not None else None
        window = _Window
        # the common cases read straight off an Event: a key of >= 2 endpoint fields, a distinct fields.X
        kget = _endpoint_getter(c.by_segs) if len(c.by_segs) >= 2 else None
        ds = c.distinct_segs
        direct = ds is not None and len(ds) == 2 and ds[0][0] == "fields" and not ds[1][1]
        fname = ds[1][0] if direct else None

        def counted(event: Event) -> Match | None:
            if t is not None and not t(event):
                return None
            fast = type(event) is Event
            key = kget(event) if fast and kget is not None else keyc(event)
            win = states.get(key)                   # the window, as RuleEngine._state (LRU order)
            if win is None:
                win = states[key] = window()
                if len(states) > MAX_KEYS:
                    states.popitem(last=False)
            else:
                states.move_to_end(key)
            items = win.items
            ts = event.ts
            cutoff = ts - within
            if items and items[0][0] < cutoff:
                win.expire(cutoff)
            if first is None:
                items.append((ts, event, None))
                if len(items) > MAX_EVIDENCE:
                    win._pop()
                n = len(items)
            else:
                distinct = win.distinct
                if fname is not None and fast and type(event.fields) is dict:
                    value = event.fields.get(fname)
                    if value is not None and type(value) not in _PLAIN:
                        value = first(event)    # a list, another type
                else:
                    value = first(event)
                if value is None:
                    return None
                items.append((ts, event, value))
                distinct[value] = distinct.get(value, 0) + 1
                if len(items) > MAX_EVIDENCE:
                    win._pop()
                n = len(distinct)
            if n < gte:
                return None
            evidence = [e for _, e, _ in items]
            group = dict(zip(by, key, strict=True))
            states.pop(key, None)                   # start a fresh window after firing
            return Match(rule, event, evidence, group, n, None, lambda: _count_reason(rule, event, n, group))
        return counted

    def _step_count(self, rule: Rule, event: Event, key: tuple) -> Match | None:
        c = rule.count
        win = self._state(rule, key, _Window)
        win.expire(event.ts - c.within)
        value = None
        if c.distinct_segs is not None:
            vals = resolve(event, c.distinct_segs)
            if not vals:
                return None
            value = vals[0] if isinstance(vals[0], _SCALAR) else repr(vals[0])
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
