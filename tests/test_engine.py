"""The matcher and the streaming engine: explanations, per-kind index, bounded state, alert events."""

from __future__ import annotations

import textwrap

import pytest

from detect import engine
from detect.alerts import ALERT_FIELDS
from detect.engine import OPERATORS, ConditionError, RuleEngine, compile_condition, evaluate, explain
from detect.ruleset import parse_rule
from icsight.events import Endpoint, Event, Origin

T0 = 1_700_000_000.0


def ev(i: int, ts: float = 0.0, kind: str = "s7comm", src: str = "10.0.0.1", dst: str = "10.0.0.9",
       frames: tuple[int, ...] | None = None, **fields) -> Event:
    return Event(f"e{i}", T0 + ts, kind, "t", "sensor-1", Endpoint(src, 49152, None),
                 Endpoint(dst, 102, None), "control", fields, Origin("x.pcap", frames or (i,)))


RULE = textwrap.dedent("""
    id: t-plc-stop
    title: {zh: PLC 停机, en: PLC stop}
    description: test
    severity: critical
    protocol: s7comm
    techniques: [T0858]
    category: 网络攻击事件/拒绝服务
    controls: [L3-CES5-01]
    match:
      all:
        - {field: kind, equals: s7comm}
        - {field: fields.function, equals: PLC_STOP}
        - not: {field: src.ip, cidr: 10.1.1.0/24}
""")


def test_result_is_truthy_and_keeps_children() -> None:
    node = compile_condition({"all": [{"field": "kind", "equals": "s7comm"},
                                      {"any": [{"field": "fields.function", "equals": "PLC_STOP"},
                                               {"field": "fields.function", "equals": "PI_SERVICE"}]}]})
    r = evaluate(node, ev(1, function="PLC_STOP"))
    assert r and len(r.children) == 2 and r.children[1].children[0].values == ("PLC_STOP",)
    miss = evaluate(node, ev(2, function="READ_VAR"))
    assert not miss
    assert [lf.node.path for lf in miss.leaves()] == ["fields.function", "fields.function"]


def test_explain_names_conditions_and_values_in_both_languages() -> None:
    node = compile_condition({"all": [{"field": "kind", "equals": "s7comm"},
                                      {"field": "fields.function", "equals": "PLC_STOP"},
                                      {"not": {"field": "src.ip", "cidr": "10.1.1.0/24"}}]})
    x = explain(evaluate(node, ev(1, function="PLC_STOP", src="192.168.0.128")))
    assert "fields.function equals PLC_STOP (saw PLC_STOP)" in x["en"]
    assert "NOT src.ip in network 10.1.1.0/24 (saw 192.168.0.128)" in x["en"]
    assert "等于" in x["zh"] and "实际值 PLC_STOP" in x["zh"]
    assert "kind" not in x["en"]            # the kind adds nothing when other conditions decided


@pytest.mark.parametrize(("cond", "msg", "loc"), [
    ({"fields": "x", "equals": 1}, "unknown condition keys", ()),
    ({"field": "fields.x"}, "exactly one operator", ()),
    ({"field": "fields.x", "equals": 1, "in": [1]}, "exactly one operator", ()),
    ({"field": "fields.x", "equal": 1}, "unknown operator 'equal'", ("equal",)),
    ({"field": "flags.x", "equals": 1}, "unknown event field 'flags'", ("field",)),
    ({"field": "src.address", "equals": 1}, "src has only ip, port, mac", ("field",)),
    ({"field": "fields", "equals": 1}, "name a protocol field", ("field",)),
    ({"field": "fields.x", "in": []}, "non-empty list", ("in",)),
    ({"field": "fields.x", "equals": [1, 2]}, "use `in`", ("equals",)),
    ({"field": "fields.x", "range": {"low": 1}}, "range takes", ("range",)),
    ({"field": "fields.x", "range": {"min": "a"}}, "must be a number", ("range",)),
    ({"field": "fields.x", "regex": "(("}, "regex does not compile", ("regex",)),
    ({"field": "fields.x", "exists": "yes"}, "true or false", ("exists",)),
    ({"field": "src.ip", "cidr": "10.0.0.0/33"}, "not an address or network", ("cidr",)),
    ({"field": "src.ip", "in_list": "nope"}, "unknown list 'nope'", ("in_list",)),
    ({"field": "fields.x", "startswith": 5}, "startswith takes", ("startswith",)),
    ({"all": []}, "non-empty list", ("all",)),
    ({"all": [{"field": "kind", "equals": "x"}], "any": []}, "must be alone", ()),
    ({"any": [{"field": "kind", "equals": "x"}, {"nope": 1}]}, "unknown condition keys", ("any", 1)),
    ([], "a condition is a mapping", ()),
])
def test_condition_errors_carry_their_location(cond, msg, loc) -> None:
    with pytest.raises(ConditionError, match=msg) as e:
        compile_condition(cond)
    assert e.value.loc == loc


def test_operator_registry_is_closed_and_complete() -> None:
    assert set(OPERATORS) == {"equals", "in", "range", "regex", "exists", "cidr", "in_list", "startswith"}
    for name, op in OPERATORS.items():
        assert op.name == name and op.en != "?" and op.zh != "?"


def test_kinds_index_skips_rules_of_other_kinds() -> None:
    rule = parse_rule(RULE)
    assert rule.kinds() == frozenset({"s7comm"})
    eng = RuleEngine([rule])
    assert eng._candidates("modbus") == [] and eng._candidates("s7comm") == [rule]
    any_kind = compile_condition({"any": [{"field": "kind", "equals": "a"},
                                          {"field": "fields.x", "exists": True}]})
    assert any_kind.kinds() is None
    assert compile_condition({"field": "kind", "in": ["a", "b"]}).kinds() == frozenset({"a", "b"})


def test_alert_event_shape() -> None:
    rule = parse_rule(RULE)
    eng = RuleEngine([rule])
    trigger = ev(7, ts=5, frames=(35, 36), function="PLC_STOP", src="192.168.0.128")
    assert eng.process(ev(6, function="READ_VAR")) == []
    (a,) = eng.process(trigger)
    assert (a.kind, a.action, a.ts, a.src, a.dst) == ("alert", "alert", trigger.ts, trigger.src, trigger.dst)
    assert a.origin.frames == (35, 36) and a.origin.capture == "x.pcap"
    f = a.fields
    assert set(f) <= set(ALERT_FIELDS)
    assert f["rule_id"] == "t-plc-stop" and f["layer"] == "rule" and f["severity"] == "critical"
    assert f["title"] == {"zh": "PLC 停机", "en": "PLC stop"}
    assert f["techniques"] == ["T0858"] and f["category"] == "网络攻击事件/拒绝服务"
    assert f["controls"] == ["L3-CES5-01"] and f["evidence"] == ["e7"] and f["count"] == 1
    assert f["group"] == {"src.ip": "192.168.0.128", "dst.ip": "10.0.0.9"}
    assert "PLC_STOP" in f["reason"]["en"] and "PLC_STOP" in f["reason"]["zh"]
    # deterministic id, JSON round trip
    assert a.id == RuleEngine([rule]).process(trigger)[0].id
    assert Event.from_json(a.to_json()) == a


def test_alert_frames_cover_all_evidence_sorted_and_deduplicated() -> None:
    rule = parse_rule(RULE.replace("\nmatch:", "\ncount: {gte: 3, within: 10s, by: [src.ip]}\nmatch:"))
    eng = RuleEngine([rule])
    out = []
    for i, frames in enumerate([(9, 10), (3, 4), (10, 11)]):
        out += eng.process(ev(i, ts=i, frames=frames, function="PLC_STOP"))
    (a,) = out
    assert a.origin.frames == (3, 4, 9, 10, 11)
    assert a.fields["evidence"] == ["e0", "e1", "e2"] and a.fields["count"] == 3
    assert "3 matching events within 10 s" in a.fields["reason"]["en"]
    assert a.fields["group"] == {"src.ip": "10.0.0.1"}


def test_suppressed_duplicates_are_counted() -> None:
    eng = RuleEngine([parse_rule(RULE)])
    n = sum(len(eng.process(ev(i, ts=i, function="PLC_STOP"))) for i in range(5))
    assert n == 1 and eng.suppressed == 4 and eng.matches == 5
    assert len(eng.process(ev(9, ts=61, function="PLC_STOP"))) == 1


def test_window_state_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(engine, "MAX_KEYS", 50)
    monkeypatch.setattr(engine, "MAX_EVIDENCE", 20)
    rule = parse_rule(RULE.replace("\nmatch:", "\ncount: {gte: 1000, within: 1h, by: [src.ip]}\nmatch:"))
    eng = RuleEngine([rule])
    for i in range(500):
        eng.process(ev(i, ts=i * 0.01, src=f"10.0.{i // 250}.{i % 250}", function="PLC_STOP"))
    assert len(eng.windows[rule.id]) == 50
    for i in range(100):
        eng.process(ev(i, ts=10 + i * 0.01, src="10.9.9.9", function="PLC_STOP"))
    assert len(eng.windows[rule.id][("10.9.9.9",)].items) == 20


def test_sequence_reason_lists_steps_and_frames() -> None:
    text = RULE[:RULE.index("match:")] + textwrap.dedent("""
        sequence:
          steps:
            - {field: fields.function, equals: PLC_STOP}
            - {field: fields.function, equals: PI_SERVICE}
          within: 10s
          by: [src.ip]
    """)
    eng = RuleEngine([parse_rule(text)])
    assert eng.process(ev(1, ts=0, frames=(5, 6), function="PLC_STOP")) == []
    (a,) = eng.process(ev(2, ts=2, frames=(8, 9), function="PI_SERVICE"))
    assert a.origin.frames == (5, 6, 8, 9) and a.fields["evidence"] == ["e1", "e2"]
    assert "step 1 frame 5,6" in a.fields["reason"]["en"] and "第 2 步" in a.fields["reason"]["zh"]


def test_alerts_are_never_rematched() -> None:
    rule = parse_rule(RULE.replace("- {field: kind, equals: s7comm}",
                                   "- {field: fields.function, exists: true}"))
    eng = RuleEngine([rule])
    (a,) = eng.process(ev(1, function="PLC_STOP"))
    assert eng.process(a) == []


def test_distinct_count_reason_and_match_helper() -> None:
    text = RULE.replace("\nmatch:", "\ncount: {gte: 3, within: 1m, by: [src.ip], distinct: dst.port}\nmatch:")
    rule = parse_rule(text)
    events = [Event(f"p{i}", T0 + i, "s7comm", "t", "s", Endpoint("10.6.6.6", 40000 + i, None),
                    Endpoint("10.0.0.9", port, None), "control", {"function": "PLC_STOP"},
                    Origin("x.pcap", (i,)))
              for i, port in enumerate([102, 102, 502, 102, 20000])]
    (a,) = engine.match([rule], events)
    assert a.fields["count"] == 3 and a.fields["evidence"] == ["p0", "p1", "p2", "p3", "p4"]
    assert a.fields["reason"]["en"].startswith(
        "3 distinct dst.port within 60 s (threshold 3) for src.ip=10.6.6.6")
    assert "60 秒内 3 个不同的 dst.port" in a.fields["reason"]["zh"]
    assert engine.match([rule], events[:4]) == []


# ---------------------------------------------------------------- the pre-condition index


def _rule(rid: str, body: str) -> object:
    return parse_rule(f"id: {rid}\ntitle: {{en: x}}\ndescription: x\nseverity: low\nprotocol: network\n"
                      f"category: 其他事件\n{textwrap.dedent(body)}")


def _fired(eng: RuleEngine, event: Event) -> list[str]:
    return [a.fields["rule_id"] for a in eng.process(event)]


def test_preconditions_come_from_required_leaves_only() -> None:
    pre = engine.preconditions
    c = compile_condition
    assert pre(c({"field": "fields.func", "in": ["a", "b"]})) == {
        "fields.func": frozenset({(False, "a"), (False, "b")})}
    both = pre(c({"all": [{"field": "kind", "equals": "modbus"}, {"field": "fields.f", "in": [1, 2, 3]},
                          {"field": "fields.f", "in": [3, 4]}, {"field": "action", "equals": "write"}]}))
    assert both == {"fields.f": frozenset({(False, 3)}), "action": frozenset({(False, "write")})}
    # a negation, a branch that does not constrain the field, other operators: no pre-condition
    assert pre(c({"not": {"field": "fields.f", "equals": 1}})) == {}
    assert pre(c({"any": [{"field": "fields.f", "equals": 1}, {"field": "fields.g", "equals": 2}]})) == {}
    assert pre(c({"all": [{"field": "fields.f", "startswith": "C_"}, {"field": "fields.g", "exists": True},
                          {"field": "fields.items[].f", "equals": 1}]})) == {}
    # every branch of an any constrains the field: the union
    assert pre(c({"any": [{"field": "fields.f", "equals": 1}, {"field": "fields.f", "in": [2, True]}]})) == {
        "fields.f": frozenset({(False, 1), (False, 2), (True, True)})}
    # null and NaN equal nothing; a non-scalar value makes the leaf unindexable
    only_x = {"fields.f": frozenset({(False, "x")})}
    assert pre(c({"field": "fields.f", "in": [None, float("nan"), "x"]})) == only_x
    assert pre(c({"field": "fields.f", "in": [[1], 2]})) == {}


def test_index_runs_only_rules_whose_precondition_holds() -> None:
    rules = [_rule("r-write", "match: {all: [{field: kind, equals: s7comm}, {field: fields.function, "
                              "in: [WRITE_VAR, PLC_STOP]}]}\nsuppress: 0"),
             _rule("r-free", "match: {all: [{field: kind, equals: s7comm}, "
                             "{field: fields.function, startswith: PLC_}]}\nsuppress: 0")]
    eng = RuleEngine(rules)
    plan = eng.plans["s7comm"]
    assert [p for p, *_ in plan.fields] == ["fields.function"] and len(plan.always) == 1
    assert len(plan.select(ev(1, function="READ_VAR"))) == 1              # only the unindexed rule
    assert _fired(eng, ev(2, function="PLC_STOP")) == ["r-write", "r-free"]  # both, in rule order
    assert _fired(eng, ev(3, function="PLC_HOT_RESTART")) == ["r-free"]   # no pre-condition: still fires
    assert _fired(eng, ev(4, function="WRITE_VAR")) == ["r-write"]
    assert _fired(eng, ev(5)) == []                                       # indexed field missing
    assert _fired(eng, ev(6, function=None)) == []
    assert _fired(eng, ev(7, function=["READ_VAR", "WRITE_VAR"])) == ["r-write"]   # a list: any element
    assert _fired(eng, ev(8, function=("PLC_STOP",))) == ["r-write", "r-free"]
    assert _fired(eng, ev(9, function=["READ_VAR"])) == []
    assert _fired(eng, ev(10, function={"x": 1})) == []                   # unhashable: no crash, no match


def test_index_keeps_bools_apart_from_numbers() -> None:
    eng = RuleEngine([_rule("r-one", "match: {field: fields.f, equals: 1}\nsuppress: 0"),
                      _rule("r-true", "match: {field: fields.f, in: [true]}\nsuppress: 0"),
                      _rule("r-eight", "match: {field: fields.f, in: [8, x]}\nsuppress: 0")])
    assert _fired(eng, ev(1, f=1)) == ["r-one"]
    assert _fired(eng, ev(2, f=True)) == ["r-true"]
    assert _fired(eng, ev(3, f=1.0)) == ["r-one"]
    assert _fired(eng, ev(4, f=8.0)) == ["r-eight"]
    assert _fired(eng, ev(5, f=[True, 8])) == ["r-true", "r-eight"]
    assert _fired(eng, ev(6, f=False)) == []


def test_any_kind_rules_run_after_the_rules_of_the_kind() -> None:
    # the order of `_candidates`: the rules of the kind first, then the rules that name no kind
    anyk = _rule("r-any", "match: {field: fields.function, equals: PLC_STOP}\nsuppress: 0")
    kind = _rule("r-kind", "match: {all: [{field: kind, equals: s7comm}, "
                           "{field: fields.function, equals: PLC_STOP}]}\nsuppress: 0")
    eng = RuleEngine([anyk, kind])
    assert eng._candidates("s7comm") == [kind, anyk]
    assert _fired(eng, ev(1, function="PLC_STOP")) == ["r-kind", "r-any"]
    assert _fired(eng, ev(2, kind="modbus", function="PLC_STOP")) == ["r-any"]


def test_compiled_test_agrees_with_the_tree() -> None:
    conds = [
        {"all": [{"field": "kind", "equals": "s7comm"}, {"not": {"field": "src.ip", "cidr": "10.1.1.0/24"}},
                 {"field": "fields.n", "range": {"min": 2}}]},
        {"any": [{"field": "fields.f", "exists": False},
                 {"not": {"field": "fields.f", "in": [1, "a", True]}}]},
        {"all": [{"field": "fields.f", "equals": True},
                 {"any": [{"field": "fields.g", "startswith": "C_"},
                          {"field": "fields.items[].f", "equals": 1}]}]},
        {"not": {"all": [{"field": "fields.f", "equals": 1.0}, {"field": "fields.g", "regex": "^x"}]}},
        {"field": "fields.f", "exists": True},
    ]
    values = [None, 0, 1, 1.0, True, False, "a", "x1", "C_SC", 3, [], [1], [None, "a"], (True,), {"k": 1},
              [{"f": 1}]]
    events = [ev(i, src=src, f=f, g=g, n=g, items=f)
              for i, (f, g, src) in enumerate((f, g, src) for f in values for g in values
                                              for src in ("10.1.1.7", "10.2.0.1"))]
    for cond in conds:
        node = compile_condition(cond)
        fast = engine.compile_test(node)
        assert [fast(e) for e in events] == [node.test(e) for e in events] == \
            [bool(evaluate(node, e)) for e in events], cond


def _reference(eng: RuleEngine, event: Event) -> list[Event]:
    """`process` without the index and the compiled steps: every rule of the kind through `_step`."""
    if event.kind == "alert":
        return []
    out: list[Event] = []
    for rule in eng._candidates(event.kind):
        m = eng._step(rule, event)
        if m is not None:
            eng._emit(m, event, out)
    return out


def test_indexed_engine_equals_the_reference_on_random_events() -> None:
    import random

    from detect.ruleset import load_rules

    rs = load_rules()
    values: dict[str, list] = {}

    def walk(d: object) -> None:
        if isinstance(d, dict):
            path = d.get("field")
            if isinstance(path, str) and path.startswith("fields.") and "[]" not in path:
                for k, v in d.items():
                    if k != "field":
                        values.setdefault(path[7:], []).extend(v if isinstance(v, list) else [v])
            for v in d.values():
                walk(v)
        elif isinstance(d, list):
            for v in d:
                walk(v)

    for r in rs:
        walk(r.model.match)
        walk(r.model.sequence.steps if r.model.sequence else None)
    extra = [_rule("x-any-first", "match: {field: fields.func_code, in: [8, 1, true]}"),
             _rule("x-not", "match: {all: [{field: kind, in: [modbus, dnp3]}, {not: {any: [{field: action, "
                            "equals: read}, {field: fields.test, equals: true}]}}]}\nsuppress: 0"),
             _rule("x-count", "match: {any: [{field: fields.service, equals: Who-Is}, "
                              "{field: fields.service, in: [Stop, Start]}]}\n"
                              "count: {gte: 3, within: 10s, by: [src.ip], distinct: dst.port}")]
    rules = extra[:1] + list(rs) + extra[1:]
    kinds = [*sorted({k for r in rules for k in r.kinds() or ()}), "other", "alert"]
    odd = [None, 0, 1, True, False, 1.0, "x", [], {"a": 1}]
    rnd = random.Random(7)

    def value(name: str) -> object:
        pool = [v for v in values.get(name, []) if isinstance(v, str | int | float | bool)] + odd
        r = rnd.random()
        if r < 0.1:
            return [rnd.choice(pool) for _ in range(rnd.randint(0, 3))]
        return rnd.choice(pool)

    events, ts = [], 0.0
    for i in range(4000):
        ts += rnd.choice([0.0, 0.05, 1.0, -0.2])
        fields = {n: value(n) for n in values if rnd.random() < 0.4}
        src = rnd.choice(["10.1.1.5", "10.2.0.10", "10.9.9.9", "fe80::1"])
        events.append(Event(f"r{i}", T0 + ts, rnd.choice(kinds), "t", "s", Endpoint(src, 1000, "aa"),
                            Endpoint(rnd.choice(["10.0.0.1", "10.0.0.2"]), rnd.randint(1, 20), "bb"),
                            rnd.choice(["read", "write", "control", "program", "discover"]), fields,
                            Origin("r.pcap", (i,))))
    fast, ref = RuleEngine(rules), RuleEngine(rules)
    got = [a.to_json() for e in events for a in fast.process(e)]
    want = [a.to_json() for e in events for a in _reference(ref, e)]
    assert len({a.split('"rule_id":"')[1].split('"')[0] for a in want}) >= 30   # many rules fired
    assert got == want
    assert (fast.matches, fast.suppressed) == (ref.matches, ref.suppressed)
