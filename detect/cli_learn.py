"""CLI of the learned layers: `icsight detect learn|run|accept`, `icsight alerts`, `icsight eval`.

stdout carries only requested data (`--json`, tables); summaries go to stderr. Exit codes: icsight/errors.py.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from icsight import errors
from icsight.cli_query import _TimeParam
from icsight.errors import CaptureError, ConfigError
from icsight.events import Event, ts_to_iso
from icsight.settings import Settings

SEV_ORDER = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Data directory (default: $ICSIGHT_DATA_DIR, else the per-user data dir).",
)
config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML settings file (default: DATA_DIR/icsight.yml if present).",
)
layers_option = click.option(
    "--layers",
    default="rules,baseline,process,model",
    show_default=True,
    help="Layers to use, comma separated (rules, baseline, process, model); learning with rules learns the "
    "rule tuning (the rule alerts normal traffic raises).",
)


def _settings(data_dir: str | None, config: str | None) -> Settings:
    try:
        return Settings.load(data_dir=data_dir, config=config)
    except ConfigError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_CONFIG)


def _store(settings: Settings, readonly: bool = False) -> Any:
    from storage import open_store
    from storage.errors import StoreError

    try:
        return open_store(settings, readonly=readonly)
    except StoreError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_STORE)


@click.group()
def detect() -> None:
    """Learned detection: learn a baseline from normal traffic, re-score stored events, accept deviations."""


@detect.command("learn")
@click.argument("captures", nargs=-1, required=True, type=click.Path())
@data_dir_option
@config_option
@layers_option
@click.option("--store/--no-store", default=False, help="Also store the learning events.")
def learn_cmd(
    captures: tuple[str, ...], data_dir: str | None, config: str | None, layers: str, store: bool
) -> None:
    """Learn the site's baseline, process/timing profile and models from normal-traffic CAPTURES."""
    from detect.runtime import Detection, load_rule_engine, make_layers, save_layers
    from detect.state import state_dir
    from sensors.pipeline import Sensor
    from sensors.run import read_captures

    settings = _settings(data_dir, config)
    enabled = set(layers.split(","))
    ls, _ = make_layers(None, enabled)
    # the rules run too: what they raise on normal traffic becomes the site's rule tuning
    det = Detection(ls, "learn", load_rule_engine(lists=settings.lists) if "rules" in enabled else None)
    sinks = []
    st = None
    if store:
        st = _store(settings)
        sinks.append(st.append)
    sensor = Sensor(settings, observers=[det])
    code = errors.E_OK
    try:
        n = read_captures(sensor, captures, sinks, batch=settings.batch_size)
    except CaptureError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_CAPTURE)
    finally:
        if st is not None:
            st.close()
    for layer in ls:  # the sensor's end() already did this per capture; again for every capture
        layer.finish_learning()
    directory = state_dir(settings.data_dir, settings.tenant)
    save_layers(directory, ls, det.tuning if det.rules is not None else None)
    parts = []
    if det.rules is not None:
        rules_seen = sorted({e["rule_id"] for e in det.tuning.entries.values()})
        parts.append(f"rules: {len(det.tuning)} rule alert keys learned as normal (rule tuning)"
                     + (f": {', '.join(rules_seen)}" if rules_seen else ""))
    for layer in ls:
        s = layer.to_state() if layer.name != "model" else {}
        if layer.name == "baseline":
            parts.append(
                f"baseline: {len(s['bindings'])} IP-MAC bindings, {len(s['talkers'])} talker pairs, "
                f"{len(s['ops'])} operations, {len(s['write_refs'])} written points"
            )
        elif layer.name == "process":
            periodic = sum(1 for c in s["channels"].values() if c.get("period"))
            parts.append(
                f"process: {len(s['points'])} points, {len(s['channels'])} channels ({periodic} periodic)"
            )
        elif layer.name == "model":
            parts.append(
                "model: "
                + (
                    f"{layer.meta['rows']} training rows"
                    if layer.model is not None
                    else "too few windows, none fitted"
                )
            )
    click.echo(f"learned from {n} events -> {directory}\n  " + "\n  ".join(parts), err=True)
    sys.exit(code)


@detect.command("run")
@data_dir_option
@config_option
@layers_option
@click.option("--since", type=_TimeParam(), default=None, help="From this time (ISO 8601 or epoch seconds).")
@click.option("--until", type=_TimeParam(), default=None, help="Before this time.")
def run_cmd(
    data_dir: str | None, config: str | None, layers: str, since: float | None, until: float | None
) -> None:
    """Re-score the stored events with the rules and the learned state; store the alerts (idempotent)."""
    from detect.runtime import Detection, load_rule_engine, load_tuning, make_layers
    from detect.state import state_dir
    from storage import EventQuery

    settings = _settings(data_dir, config)
    directory = state_dir(settings.data_dir, settings.tenant)
    ls, learned = make_layers(directory, set(layers.split(",")))
    if not learned:
        click.echo(
            f"icsight: no learned state in {directory}: run `icsight detect learn` first; rules only",
            err=True,
        )
        ls = []
    rules = load_rule_engine(lists=settings.lists) if "rules" in layers.split(",") else None
    det = Detection(ls, "protect", rules, tuning=load_tuning(directory))
    st = _store(settings)
    alerts: list[Event] = []
    n = 0
    try:
        kinds_skip = {"alert", "asset"}
        for ev in st.query(EventQuery(since=since, until=until, tenant=settings.tenant)):
            if ev.kind in kinds_skip:
                continue
            n += 1
            alerts.extend(det(ev) or ())
        alerts.extend(det.finish())
        new = st.append(alerts) if alerts else 0
    finally:
        st.close()
    click.echo(f"{n} events scored, {len(alerts)} alerts ({new} new) -> {settings.db_path}", err=True)


@detect.command("accept")
@click.argument("alert_id")
@data_dir_option
@config_option
def accept_cmd(alert_id: str, data_dir: str | None, config: str | None) -> None:
    """Accept what alert ALERT_ID names as normal for the site: a baseline deviation into the baseline,
    a rule alert's rule and hosts (its group) into the rule tuning."""
    from detect.runtime import accept
    from storage import EventQuery

    settings = _settings(data_dir, config)
    st = _store(settings, readonly=True)
    try:
        alert = next((a for a in st.query(EventQuery(kinds=("alert",))) if a.id == alert_id), None)
    finally:
        st.close()
    if alert is None:
        click.echo(f"icsight: no alert {alert_id} in {settings.db_path}", err=True)
        sys.exit(errors.E_USAGE)
    try:
        changed = accept(settings, alert)
    except ValueError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_USAGE)
    if alert.fields.get("layer") == "rule":
        from detect.tuning import tuning_key

        where, entry = "the rule tuning", tuning_key(alert)
    else:
        where = "the baseline"
        entry = orjson.dumps(alert.fields["baseline_entry"], option=orjson.OPT_SORT_KEYS).decode()
    click.echo(f"{'accepted into' if changed else 'already in'} {where}: {entry}", err=True)


@click.command("alerts")
@data_dir_option
@config_option
@click.option("--severity", type=click.Choice(list(SEV_ORDER)), default=None, help="At least this severity.")
@click.option("--since", type=_TimeParam(), default=None, help="From this time (ISO 8601 or epoch seconds).")
@click.option("--until", type=_TimeParam(), default=None, help="Before this time.")
@click.option("--layer", default=None, help="Only alerts of this layer (rule, baseline, process, model).")
@click.option("--limit", type=int, default=None, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines (the Event format) instead of a table.")
def alerts(
    data_dir: str | None,
    config: str | None,
    severity: str | None,
    since: float | None,
    until: float | None,
    layer: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List stored alerts, oldest first, with why they fired and the frames behind them."""
    from storage import EventQuery

    settings = _settings(data_dir, config)
    st = _store(settings, readonly=True)
    floor = SEV_ORDER[severity] if severity else 0
    n = 0
    try:
        for a in st.query(EventQuery(kinds=("alert",), since=since, until=until, tenant=settings.tenant)):
            f = a.fields
            if SEV_ORDER.get(f.get("severity"), 0) < floor or (layer and f.get("layer") != layer):
                continue
            if as_json:
                click.echo(a.to_json())
            else:
                reason = (f.get("reason") or {}).get("en", "")
                frames = ",".join(map(str, a.origin.frames[:8])) + ("..." if len(a.origin.frames) > 8 else "")
                click.echo(
                    f"{ts_to_iso(a.ts)}  {f.get('severity', '?'):8} {f.get('layer', '?'):8} "
                    f"{f.get('rule_id')}  {a.id}\n    {reason}\n    {a.origin.capture} frames {frames}"
                )
            n += 1
            if limit is not None and n >= limit:
                break
    finally:
        st.close()
    click.echo(f"{n} alerts", err=True)


@click.command("eval")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as one JSON object.")
@click.option(
    "--series-learn",
    type=float,
    default=7200.0,
    show_default=True,
    help="Seconds at the start of each per-second series used for learning (series track).",
)
def eval(directory: str, as_json: bool, series_learn: float) -> None:
    """Learn on DIRECTORY's control_* days, freeze, score its attack days; print the metrics."""
    from detect.eval import evaluate, table

    try:
        report = evaluate(directory, series_learn_s=series_learn)
    except FileNotFoundError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_USAGE)
    except CaptureError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_CAPTURE)
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode())
    else:
        click.echo(table(report))
