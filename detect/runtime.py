"""Detection inside the sensor: rules + learned layers as one sensor observer, learn or protect mode.

`build_observers(settings)` gives the observer list to append to a `Sensor` (after the asset
inventory). With no learned state for the site in the data directory the learned layers run in
learning mode (and save their state at the end of the capture); with state they protect. Rules (the
rule engine of `detect.engine`, rules from `rules/`) fire in both modes; what they raise while learning
is the site's rule tuning (`detect.tuning`): in protect mode those rule alerts are dropped. Alerts of the
same deviation key are de-duplicated: a key alerts again only after `dedup_s` seconds of capture time
without it.

`schedule_retraining` re-fits the anomaly model from the stored events on an APScheduler interval.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from detect.baseline import Baseline, Layer
from detect.models.window import WindowModel
from detect.process import ProcessTiming
from detect.state import has_learned_state, has_state_in, load_json, save_json, state_dir
from detect.tuning import FILE as TUNING_FILE
from detect.tuning import RuleTuning
from icsight.events import Event

log = logging.getLogger(__name__)

LAYERS = ("rules", "baseline", "process", "model")
DEDUP_S = 60.0


def load_ruleset(rules_dir: str | Path | None = None, lists: Any | None = None) -> Any | None:
    """The rules under `rules_dir` (default `rules/`), or None when the rule layer or any rule is missing.
    `lists` (the site's, from settings) replace the rule lists of the same name.

    :raise detect.ruleset.InvalidRuleSet: a rule file is invalid.
    """
    try:
        from detect.ruleset import RULES_DIR, load_rules
    except ImportError:
        return None
    d = Path(rules_dir) if rules_dir else RULES_DIR
    if not d.exists():
        return None
    rs = load_rules(d, {k: [str(x) for x in v] for k, v in (lists or {}).items()})
    return rs if len(rs) else None


def load_rule_engine(
    rules_dir: str | Path | None = None, ruleset: Any | None = None, lists: Any | None = None
) -> Any | None:
    """A fresh rule engine (its own windows and suppression state) over `ruleset` or the rules on disk
    (with the site's `lists`)."""
    rs = ruleset if ruleset is not None else load_ruleset(rules_dir, lists)
    if rs is None:
        return None
    from detect.engine import RuleEngine

    return RuleEngine(rs)


class Detection:
    """One observer running the enabled layers. Call it with each event; `finish()` at the end."""

    def __init__(
        self,
        layers: Sequence[Layer],
        mode: str = "protect",
        rules: Any | None = None,
        dedup_s: float = DEDUP_S,
        save_to: Path | None = None,
        tuning: RuleTuning | None = None,
    ) -> None:
        if mode not in ("learn", "protect"):
            raise ValueError(f"mode must be learn or protect, not {mode!r}")
        self.layers, self.mode, self.rules, self.dedup_s, self.save_to = (
            list(layers),
            mode,
            rules,
            dedup_s,
            save_to,
        )
        self.tuning = tuning if tuning is not None else RuleTuning()
        if mode == "protect" and rules is not None and self.tuning.entries:
            rules.muted = self.tuning.mutes      # dropped inside the engine, before explaining
        self.last_key: dict[str, float] = {}
        self.suppressed = 0
        self.raw: list[Event] | None = None  # set to a list to also collect alerts before de-duplication

    def __call__(self, ev: Event) -> list[Event] | None:
        if ev.kind in ("alert", "asset"):
            return None
        alerts: list[Event] = []
        if self.rules is not None:
            hits = self.rules.process(ev)      # protect mode: the engine drops tuned keys (`muted`)
            if hits:
                if self.mode == "learn":
                    for a in hits:
                        self.tuning.learn(a)
                alerts.extend(hits)
        if self.mode == "learn":
            for layer in self.layers:
                layer.learn(ev)
        else:
            for layer in self.layers:
                alerts.extend(layer.check(ev))
        return self._dedup(alerts) if alerts else None

    def _dedup(self, alerts: Iterable[Event]) -> list[Event]:
        out = []
        for a in alerts:
            if self.raw is not None:
                self.raw.append(a)
            f = a.fields
            g = f.get("group") or {}
            key = g.get("key") if f.get("key") else f"{f.get('rule_id')}|{sorted(g.items())}"
            last = self.last_key.get(key)
            self.last_key[key] = a.ts if last is None else max(last, a.ts)
            if last is not None and abs(a.ts - last) < self.dedup_s:
                self.suppressed += 1
                continue
            out.append(a)
        if len(self.last_key) > 100_000:
            newest = max(self.last_key.values())
            self.last_key = {k: t for k, t in self.last_key.items() if newest - t < self.dedup_s}
        return out

    def finish(self) -> list[Event]:
        """End of input: learning mode fits and saves; protect mode flushes windowed layers."""
        if self.mode == "learn":
            for layer in self.layers:
                layer.finish_learning()
            if self.save_to is not None:
                save_layers(self.save_to, self.layers, self.tuning if self.rules is not None else None)
            return []
        alerts = []
        for layer in self.layers:
            alerts.extend(layer.flush())
        return self._dedup(alerts)


# ---------------------------------------------------------------------- state on disk
def save_layers(directory: Path, layers: Sequence[Layer], tuning: RuleTuning | None = None) -> None:
    """Save every layer's learned state (and the rule tuning) under `directory` (DATA_DIR/detect/<tenant>)."""
    directory.mkdir(parents=True, exist_ok=True)
    if tuning is not None:
        save_json(directory / TUNING_FILE, tuning.to_state())
    for layer in layers:
        if isinstance(layer, WindowModel):
            layer.save(directory / "models")
        else:
            save_json(directory / f"{layer.name}.json", layer.to_state())


def make_layers(
    directory: Path | None, enabled: Iterable[str] = LAYERS, window: float = 10.0, estimator: str = "robustz"
) -> tuple[list[Layer], bool]:
    """The learned layers, loaded from `directory` when it holds state; returns (layers, learned?)."""
    enabled = set(enabled)
    b_state = load_json(directory / "baseline.json") if directory is not None else None
    p_state = load_json(directory / "process.json") if directory is not None else None
    learned = directory is not None and has_state_in(directory)
    layers: list[Layer] = []
    base = Baseline(b_state)
    if "baseline" in enabled:
        layers.append(base)
    if "process" in enabled:
        layers.append(ProcessTiming(p_state, window=window))
    if "model" in enabled:
        m = WindowModel(window=window, estimator=estimator)
        if learned and directory is not None:
            m.load(directory / "models")
            if b_state is not None:  # without a baseline the new-talker column stays 0, as in training
                m.set_known_pairs(set(base.talkers))
        layers.append(m)
    return layers, learned


def build_observers(
    settings: Any, store: Any = None, layers: Iterable[str] = LAYERS, mode: str | None = None
) -> list[Detection]:
    """Observers for `Sensor(settings, observers=[inventory, *build_observers(settings)])`.

    Mode: "protect" when the data directory holds learned state for the tenant, else "learn" (the state
    is written at the end of the capture). Alerts returned by the observer are stored like other events.
    A saved model that does not fit this installation (`ModelMismatch`) is refused: logged as an error,
    and the sensor runs without the model layer rather than not at all.
    """
    from detect.models import ModelMismatch

    directory = state_dir(settings.data_dir, settings.tenant)
    enabled = set(layers)
    try:
        learned_layers, learned = make_layers(directory, enabled - {"rules"})
    except ModelMismatch as e:
        log.error("model refused, running without it: %s", e)
        learned_layers, learned = make_layers(directory, enabled - {"rules", "model"})
    if mode is None:
        mode = "protect" if learned else "learn"
    rules = load_rule_engine(lists=settings.lists) if "rules" in enabled else None
    tuning = load_tuning(directory)   # learning adds to what operators accepted before
    return [Detection(learned_layers, mode, rules, save_to=directory if mode == "learn" else None,
                      tuning=tuning)]


def load_tuning(directory: Path | None) -> RuleTuning:
    """The site's rule tuning (empty when none was learned)."""
    return RuleTuning(load_json(directory / TUNING_FILE) if directory is not None else None)


def learn_events(
    events: Iterable[Event], layers: Iterable[str] = LAYERS, ruleset: Any | None = None
) -> tuple[list[Layer], RuleTuning | None]:
    """Fit the learned layers on `events` (normal traffic); with "rules" in `layers`, also run the rules
    (`ruleset`, default the rules on disk) and learn the rule tuning. Nothing is saved."""
    enabled = set(layers)
    ls, _ = make_layers(None, enabled - {"rules"})
    rules = load_rule_engine(ruleset=ruleset) if "rules" in enabled else None
    tuning = RuleTuning() if rules is not None else None
    for ev in events:
        if rules is not None and ev.kind not in ("alert", "asset"):
            for a in rules.process(ev):
                tuning.learn(a)  # type: ignore[union-attr]
        for layer in ls:
            layer.learn(ev)
    for layer in ls:
        layer.finish_learning()
    return ls, tuning


def learn(settings: Any, events: Iterable[Event], layers: Iterable[str] = LAYERS) -> list[Layer]:
    """Fit every learned layer (and the rule tuning) on `events` (normal traffic); save them for the site."""
    directory = state_dir(settings.data_dir, settings.tenant)
    layers = tuple(layers)
    ruleset = load_ruleset(lists=settings.lists) if "rules" in layers else None
    ls, tuning = learn_events(events, layers, ruleset)
    save_layers(directory, ls, tuning)
    return ls


# ---------------------------------------------------------------------- operator actions
def accept(settings: Any, alert: Event) -> bool:
    """Accept what an alert names as normal for the site (saved): a baseline alert's entry into the
    baseline, a rule alert's key into the rule tuning. False if it was already there.

    :raise ValueError: the alert is neither (process or model alert).
    """
    directory = state_dir(settings.data_dir, settings.tenant)
    if alert.fields.get("layer") == "rule":
        tuning = load_tuning(directory)
        changed = tuning.accept(alert)
        save_json(directory / TUNING_FILE, tuning.to_state())
        return changed
    entry = alert.fields.get("baseline_entry")
    if not entry:
        raise ValueError(f"alert {alert.id} ({alert.fields.get('rule_id')}) names no baseline entry")
    base = Baseline(load_json(directory / "baseline.json"))
    changed = base.accept(entry, alert.id, alert.ts)
    save_json(directory / "baseline.json", base.to_state())
    return changed


def retrain_model(settings: Any, store: Any, since: float | None = None, until: float | None = None) -> bool:
    """Re-fit the window model from the stored (non-alert) events of [since, until); False if too few."""
    from storage import EventQuery

    directory = state_dir(settings.data_dir, settings.tenant)
    m = WindowModel()
    for ev in store.query(EventQuery(since=since, until=until, tenant=settings.tenant)):
        m.learn(ev)
    m.finish_learning()
    if m.model is None:
        return False
    m.save(directory / "models")
    return True


def schedule_retraining(
    settings: Any,
    store_factory: Any,
    interval_s: float,
    scheduler: Any = None,
    lookback_s: float | None = None,
) -> Any:
    """Add an interval job to an APScheduler `BackgroundScheduler` (started here if it is new).

    `store_factory()` opens a store for the job's thread; `lookback_s` limits training to recent events.
    """
    from apscheduler.schedulers.background import BackgroundScheduler

    sched = scheduler or BackgroundScheduler(timezone="UTC")

    def job() -> None:
        st = store_factory()
        try:
            since = None
            if lookback_s is not None:
                from storage import EventQuery

                last = [
                    e.ts for e in st.query(EventQuery(limit=1, offset=max(st.count(EventQuery()) - 1, 0)))
                ]
                since = last[0] - lookback_s if last else None
            retrain_model(settings, st, since=since)
        finally:
            st.close()

    sched.add_job(
        job,
        "interval",
        seconds=interval_s,
        id=f"retrain-{settings.tenant}",
        replace_existing=True,
        max_instances=1,
        coalesce=True,
    )
    if scheduler is None:
        sched.start()
    return sched


def has_state(settings: Any) -> bool:
    return has_learned_state(settings.data_dir, settings.tenant)
