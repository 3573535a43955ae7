"""`icsight demo`: a fresh data directory, a generated plant capture, the sensor over it, a summary.

The capture comes from the cyber range (`cyberrange`): the water-treatment attack day, cut to its
first 20 minutes of plant time (recon, rogue master, setpoint write, ARP MITM, injection, replay,
flood, firmware update), with per-frame labels and attack windows beside it. Everything runs offline
on the embedded store; the summary goes to stdout and says where the data is.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import click

from icsight.settings import Settings

DEMO_SCENARIO = "water_attack"
DEMO_BASELINE = "water_baseline"   # the same plant's clean day: what the learned layers learn first
DEMO_DURATION = 20 * 60.0      # plant seconds: the whole attack chain of the scenario is in its first 20 min
DEMO_LEARN = 2 * 3600.0        # the clean day the learned layers (and the rule tuning) learn


def _range_scene(path: Path, labels: Path, windows: Path, scenario: str = DEMO_SCENARIO,
                 duration: float = DEMO_DURATION, seed_step: int = 0) -> dict:
    """A cyber-range day of the water-treatment plant, cut to `duration`, with labels and windows.

    `seed_step` > 0 makes it another day of the same plant (other noise, jitter and operator timing).
    """
    from cyberrange.evaluate import SEED_STEP
    from cyberrange.generator import Range
    from cyberrange.scenario import load_scenario

    sc = load_scenario(scenario, duration=duration)
    summary = Range(sc, sc.seed + seed_step * SEED_STEP).run(path, labels, windows)
    return {"frames": summary["frames"], "labels": labels, "windows": windows,
            "scenario": f"{sc.name} ({sc.site.name}, {sc.duration / 60:.0f} min)"}


def _ident_value(v: object) -> object:
    """An identity value as stored: plain, {"value": ...}, or a list of observations (latest last)."""
    if isinstance(v, list) and v:
        v = v[-1]
    return v.get("value") if isinstance(v, dict) else v


def _what(e: object, operation: object) -> str:
    """One word for an event in an attack window: the alert's rule, the flow's state, or the operation."""
    if e.kind == "alert":
        return f"ALERT {e.fields.get('rule_id')}"
    if e.kind == "flow":
        return f"flow/{e.fields.get('conn_state')}"
    return f"{e.kind}/{operation(e)}"


def _epoch(ts: object) -> float:
    return ts.timestamp() if isinstance(ts, datetime) else float(ts)


def run_demo(data_dir: Path) -> int:
    """Generate, sense, store and summarise; returns an exit code."""
    from icsight.wiring import build_sensor
    from sensors.run import read_captures
    from storage import open_store

    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    cap = data_dir / "demo.pcap"
    # the demo's site: a config file in the data directory, so `icsight alerts --data-dir DIR` (and every
    # other command) works on the same tenant afterwards
    (data_dir / "icsight.yml").write_text("sensor: demo-sensor\ntenant: demo\n", encoding="utf-8")
    settings = Settings.load(data_dir)
    # 1. the plant's clean baseline day: the learned layers (allow-list, process values and timing,
    #    models) learn it, as `icsight detect learn` would
    from detect.runtime import learn
    from sensors.run import events_from_capture

    base_cap = data_dir / "baseline.pcap"
    base = _range_scene(base_cap, data_dir / "baseline.labels.csv", data_dir / "baseline.windows.csv",
                        DEMO_BASELINE, DEMO_LEARN, seed_step=1)
    learn(settings, events_from_capture(base_cap, settings))
    # 2. the attack day, through the sensor as `icsight sensor read` runs it (learned layers now on)
    info = _range_scene(cap, data_dir / "demo.labels.csv", data_dir / "demo.windows.csv")
    store = open_store(settings)
    sensor = build_sensor(settings, store)
    n = read_captures(sensor, [cap], [store.append])
    sensor.close()
    from storage import EventQuery

    events = list(store.query(EventQuery(tenant=settings.tenant, limit=None)))
    store_assets = store.assets(settings.tenant) if hasattr(store, "assets") else []
    store.close()

    echo = click.echo
    echo(f"icsight demo — learned {base['scenario']} ({base['frames']} frames), then read the attack day")
    echo(f"icsight demo — {info['scenario']}: {info['frames']} frames -> {n} events")
    echo("")
    echo("资产 Assets")
    for a in store_assets:
        ident = a.get("identity") or {}
        idtxt = ", ".join(f"{k}={_ident_value(v)}" for k, v in sorted(ident.items()))
        roles = a.get("roles") or {}
        rtxt = " ".join(f"{p}:{'/'.join(r)}" for p, r in sorted(roles.items()))
        echo(f"  {a.get('ip', '?'):<16} {a.get('mac') or '-':<18} {a.get('vendor') or '-':<22} {rtxt:<30} "
             f"{idtxt}")
    echo("")
    kinds = Counter(e.kind for e in events)
    echo("协议 Protocols / event kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    funcs = Counter((e.kind, e.fields.get("func") or e.fields.get("function") or e.action, e.src.ip)
                    for e in events if e.kind not in ("flow", "asset", "weird"))
    echo("")
    echo("事务 Transactions (protocol, operation, from)")
    for (k, f, src), c in funcs.most_common(12):
        echo(f"  {c:>6}  {k:<8} {f:<28} {src}")
    from cyberrange.labels import events_by_attack, operation, read_labels, read_windows

    by_attack = events_by_attack(events, read_labels(info["labels"]))
    windows = read_windows(info["windows"])
    echo("")
    echo("攻击窗口 Attack windows (labels): the alerts within [start - 1 s, end + 2 s] (as `icsight eval` "
         "counts them), then the window's own events")
    from detect.eval import SLACK_AFTER, SLACK_BEFORE

    all_alerts = [e for e in events if e.kind == "alert"]
    detected = 0
    for w in windows:
        evs = [e for e in by_attack.get((w["attack"], w["technique"]), [])
               if w["start"] - 0.001 <= _epoch(e.ts) <= w["end"] + 0.001 and e.kind != "alert"]
        evs += [a for a in all_alerts if w["start"] - SLACK_BEFORE <= _epoch(a.ts) <= w["end"] + SLACK_AFTER]
        ops = Counter(_what(e, operation) for e in evs)
        detected += any(k.startswith("ALERT") for k in ops)
        start = datetime.fromtimestamp(w["start"], UTC).strftime("%H:%M:%S")
        hosts = " ".join(w["hosts"][:3]) + (" ..." if len(w["hosts"]) > 3 else "")
        echo(f"  {start} +{w['end'] - w['start']:6.1f}s  {w['attack']:<18} {w['technique']:<6} {hosts}")
        alerts = sorted(k for k in ops if k.startswith("ALERT"))         # every alert, then the busiest
        top = ", ".join([f"{k} x{ops[k]}" for k in alerts]
                        + [f"{k} x{v}" for k, v in ops.most_common() if not k.startswith("ALERT")][:4])
        echo("      " + (top or "no event of its own (copies of segments the sensor already parsed)"))
    echo(f"检出 Detected: {detected}/{len(windows)} attack windows with an alert; "
         f"{len(all_alerts)} alerts in all")
    echo("")
    echo(f"数据 Data: {data_dir}  (capture {cap.name}, labels {info['labels'].name}, "
         f"windows {info['windows'].name}, store {settings.db_path.name})")
    echo(f"Look further:  icsight alerts --data-dir {data_dir} | head")
    echo(f"               icsight events --data-dir {data_dir} --kind modbus | head")
    echo(f"               icsight assets --data-dir {data_dir}")
    echo(f"               tshark -r {cap} -Y modbus | head")
    return 0


@click.command("demo")
@click.option("--data-dir", type=click.Path(file_okay=False), default="demo-data", show_default=True,
              help="Fresh data directory for the demo (deleted and recreated).")
def demo(data_dir: str) -> None:
    """Generate a plant capture, run the sensor into a fresh store, print a summary."""
    sys.exit(run_demo(Path(data_dir)))
