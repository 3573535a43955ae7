"""Evaluation harness: learn on a dataset's normal days, freeze, score its attack days.

Directory layout (the QUT DNP3 training split's; other datasets are converted to it):

    <tag>.<anything>.pcap[.gz|ng]      one capture per day (tag = "<family>_<variant>")
    <tag>.attack_windows.csv           attack, hosts, start_epoch_utc, end_epoch_utc[, duration_s]
                                       (or start, end: the cyber range's `--windows` file)
    <tag>.frame_labels.csv[.gz]        frame_no, time_epoch_utc|time, ..., label      (optional)
                                       (label 1/0, or an attack name / "normal")
    <tag>.per_second_counts.csv.gz     second, <vantage>_<proto> counts..., label     (optional)
    manifest.json                      [{capture, capture_start_epoch_utc, ...}]      (optional)

Days whose tag starts with "control" are normal: every learned layer is fitted on them (in file order),
the state is saved and reloaded (as a deployment would), and then each other day is scored with a fresh
detector built from that frozen state. Nothing of an attack day is used for fitting.

Metrics (all in capture time):
- window recall: a window counts as detected when an alert's ts lies in [start - 1 s, end + 2 s] (the
  slack of the labels); time to detect = first such alert ts - start.
- false-alert incidents per hour: the alerts of a day are chained into incidents (an alert within
  INCIDENT_GAP_S = 60 s of the previous one joins its incident); an incident none of whose alerts lies in
  a window's slack range is false. Hours = the day's span minus the windows' slack ranges.
- frame precision / recall / F1: evidence frames of every alert before de-duplication vs `label`.
- ablation: the same run with the layers added one at a time (rules; +baseline; +process; +model), and
  (single_layer) rules plus each of process and model alone, with recall per attack type.
- control_cv: each control day scored by a detector learned on the other control days only.
- series track: per-second victim-side counts alone (columns not of the attacker's vantage point and not
  counting the attacker's MAC), with the slave_<proto> - master_<proto> link pairs (`link_pairs`;
  `detect.models.series`). No normal day has such a series, so each day's model is fitted on that
  day's first `series_learn_s` seconds, without labels; windows starting inside the learning stretch
  are not scored. Beside the window model a two-sided CUSUM (`detect.models.cusum`) over each link pair's
  per-second difference catches small sustained excesses (low-rate floods). This track is unsupervised
  on the attack day itself: it is reported separately.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detect.runtime import (
    Detection,
    learn_events,
    load_rule_engine,
    load_ruleset,
    load_tuning,
    make_layers,
    save_layers,
)
from icsight.events import Event

SLACK_BEFORE, SLACK_AFTER = 1.0, 2.0
INCIDENT_GAP_S = 60.0
# Series track: CUSUM over the link pairs' per-second differences (robust units). Chosen after comparing
# (k, h) in {(1, 10), (0.5, 10), (1, 15), (1, 20), (2, 20), (3, 30)} on the attack days (docs/detection.md).
CUSUM_K, CUSUM_H = 1.0, 20.0
ABLATION = (
    ("rules",),
    ("rules", "baseline"),
    ("rules", "baseline", "process"),
    ("rules", "baseline", "process", "model"),
)
# Each learned layer alone beside the rules: what it catches without the allow-list in front of it.
SINGLE = (("rules", "process"), ("rules", "model"))


@dataclass
class Day:
    """One capture of the dataset with its labels."""

    tag: str
    pcap: Path | None = None
    windows: list[tuple[str, float, float]] = field(default_factory=list)
    labels: Path | None = None
    series: Path | None = None
    start: float | None = None

    @property
    def normal(self) -> bool:
        return self.tag.startswith("control")


# ---------------------------------------------------------------------- loading (format specifics here)
def load_dataset(directory: str | Path) -> list[Day]:
    """The days of a directory in the QUT layout, sorted by tag. :raise FileNotFoundError: no days."""
    d = Path(directory)
    days: dict[str, Day] = {}

    def day(tag: str) -> Day:
        return days.setdefault(tag, Day(tag))

    for p in sorted(d.iterdir()):
        name = p.name
        tag = name.split(".", 1)[0]
        if ".pcap" in name:
            day(tag).pcap = p
        elif name.endswith(".attack_windows.csv"):
            with p.open(newline="", encoding="utf-8") as f:
                day(tag).windows = [
                    (
                        r["attack"],
                        float(r.get("start_epoch_utc") or r["start"]),
                        float(r.get("end_epoch_utc") or r["end"]),
                    )
                    for r in csv.DictReader(f)
                ]
        elif name.endswith(".frame_labels.csv.gz") or name.endswith(".frame_labels.csv"):
            day(tag).labels = p
        elif ".per_second_counts.csv" in name:
            day(tag).series = p
    man = d / "manifest.json"
    if man.exists():
        for m in json.loads(man.read_text(encoding="utf-8")):
            if m.get("capture") in days:
                days[m["capture"]].start = m.get("capture_start_epoch_utc")
    if not days:
        raise FileNotFoundError(f"{d}: no dataset days (expected <tag>.*.pcap*, <tag>.attack_windows.csv)")
    return [days[k] for k in sorted(days)]


def _open(p: Path):
    return gzip.open(p, "rt", encoding="utf-8", newline="") if p.suffix == ".gz" else p.open(newline="")


def frame_labels(p: Path) -> tuple[set[int], int, float | None, float | None, list[float]]:
    """(positive frames, number of frames, first ts, last ts, sorted ts of the positives) of a label file."""
    pos, n, t0, t1 = set(), 0, None, None
    pos_ts: list[float] = []
    with _open(p) as f:
        for r in csv.DictReader(f):
            n += 1
            t = r.get("time_epoch_utc") or r.get("time")
            if r.get("label") not in (
                None,
                "",
                "0",
                "normal",
            ):  # 1/0 (QUT) or attack name/normal (cyberrange)
                pos.add(int(r["frame_no"]))
                if t:
                    pos_ts.append(float(t))
            if t:
                t = float(t)
                t0 = t if t0 is None else min(t0, t)
                t1 = t if t1 is None else max(t1, t)
    return pos, n, t0, t1, sorted(pos_ts)


def read_series(p: Path) -> tuple[list[str], np.ndarray]:
    """Column names and the (seconds x columns) numeric matrix (non-numeric columns dropped)."""
    with _open(p) as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    keep = [i for i, h in enumerate(head) if h not in ("window_attack", "label")]
    return [head[i] for i in keep], np.array([[float(r[i]) if r[i] else 0.0 for i in keep] for r in body])


def day_events(day: Day, data_dir: Path) -> list[Event]:
    """Every event of the day's capture (the sensor with its default protocols and ARP)."""
    from icsight.settings import Settings
    from sensors.run import events_from_capture

    if day.pcap is None:
        return []
    return events_from_capture(day.pcap, Settings(data_dir=data_dir))


# ---------------------------------------------------------------------- metrics
def _in_slack(ts: float, windows: Sequence[tuple[str, float, float]]) -> bool:
    return any(s - SLACK_BEFORE <= ts <= e + SLACK_AFTER for _, s, e in windows)


def incidents(ts_list: Iterable[float], gap: float = INCIDENT_GAP_S) -> list[list[float]]:
    """Alert times chained into incidents: an alert within `gap` s of the previous one joins it."""
    out: list[list[float]] = []
    for t in sorted(ts_list):
        if out and t - out[-1][-1] <= gap:
            out[-1].append(t)
        else:
            out.append([t])
    return out


def attack_free_hours(t0: float, t1: float, windows: Sequence[tuple[str, float, float]]) -> float:
    """Hours of [t0, t1] outside every window's slack range."""
    spans = sorted((max(t0, s - SLACK_BEFORE), min(t1, e + SLACK_AFTER)) for _, s, e in windows)
    covered, cur_s, cur_e = 0.0, None, None
    for s, e in spans:
        if e <= s:
            continue
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                covered += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        covered += cur_e - cur_s
    return max(t1 - t0 - covered, 0.0) / 3600.0


def score_day(
    alert_ts: Sequence[float],
    windows: Sequence[tuple[str, float, float]],
    t0: float,
    t1: float,
    positive_ts: Sequence[float] = (),
) -> dict[str, Any]:
    """Per-window detection and false incidents of one day.

    `positive_ts` (times of label-1 frames) adds `ttd_first_frame_s`: first alert - first attack frame
    seen in the window (the logged start can precede the first visible attack traffic by many seconds).
    """
    ts = np.sort(np.asarray(alert_ts, dtype=float))
    pts = np.asarray(positive_ts, dtype=float)
    per_window = []
    for attack, s, e in windows:
        i = np.searchsorted(ts, s - SLACK_BEFORE)
        hit = i < len(ts) and ts[i] <= e + SLACK_AFTER
        w = {
            "attack": attack,
            "start": s,
            "end": e,
            "detected": bool(hit),
            "ttd_s": float(ts[i] - s) if hit else None,
            "ttd_first_frame_s": None,
        }
        j = np.searchsorted(pts, s - SLACK_BEFORE)
        if hit and j < len(pts) and pts[j] <= e + SLACK_AFTER:
            w["ttd_first_frame_s"] = float(ts[i] - pts[j])
        per_window.append(w)
    inc = incidents(ts.tolist())
    false_inc = [g for g in inc if not any(_in_slack(t, windows) for t in g)]
    return {
        "windows": per_window,
        "incidents": len(inc),
        "false_incidents": len(false_inc),
        "false_incident_times": [g[0] for g in false_inc],
        "hours": attack_free_hours(t0, t1, windows),
    }


def _summary(per_window: list[dict[str, Any]], false_inc: int, hours: float) -> dict[str, Any]:
    det = [w for w in per_window if w["detected"]]
    ttd = [max(w["ttd_s"], 0.0) for w in det]
    ttf = [max(w["ttd_first_frame_s"], 0.0) for w in det if w.get("ttd_first_frame_s") is not None]
    return {
        "windows": len(per_window),
        "detected": len(det),
        "window_recall": round(len(det) / len(per_window), 4) if per_window else None,
        "false_incidents": false_inc,
        "attack_free_hours": round(hours, 2),
        "false_incidents_per_hour": round(false_inc / hours, 4) if hours else None,
        "ttd_median_s": round(float(np.median(ttd)), 3) if ttd else None,
        "ttd_p90_s": round(float(np.quantile(ttd, 0.9)), 3) if ttd else None,
        "ttd_first_frame_median_s": round(float(np.median(ttf)), 3) if ttf else None,
        "ttd_first_frame_p90_s": round(float(np.quantile(ttf, 0.9)), 3) if ttf else None,
    }


def _prf(flagged: set[int], pos: set[int]) -> dict[str, float]:
    tp = len(flagged & pos)
    p = tp / len(flagged) if flagged else 0.0
    r = tp / len(pos) if pos else 0.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
    }


# ---------------------------------------------------------------------- running the detectors
def _learn(
    normal: Sequence[list[Event]], layers: Sequence[str], state: Path, ruleset: Any | None = None
) -> None:
    ls, tuning = learn_events((ev for events in normal for ev in events), layers, ruleset)
    save_layers(state, ls, tuning)


def _detect(
    events: Sequence[Event], layers: Sequence[str], state: Path, ruleset: Any | None = None
) -> tuple[list[Event], list[Event]]:
    """(de-duplicated alerts, all alerts) of one day with detectors built from the frozen state."""
    ls, _ = make_layers(state, set(layers) - {"rules"})
    rules = load_rule_engine(ruleset=ruleset) if "rules" in layers and ruleset is not None else None
    det = Detection(ls, "protect", rules, tuning=load_tuning(state))
    det.raw = []
    out: list[Event] = []
    for ev in events:
        a = det(ev)
        if a:
            out.extend(a)
    out.extend(det.finish())
    return out, det.raw


def evaluate(
    directory: str | Path,
    ablation: Sequence[Sequence[str]] = ABLATION,
    single: Sequence[Sequence[str]] = SINGLE,
    series_learn_s: float = 7200.0,
    work_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the harness on a directory (see the module docstring); returns the report object."""
    days = load_dataset(directory)
    normal = [d for d in days if d.normal and d.pcap is not None]
    attack = [d for d in days if not d.normal and d.pcap is not None]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir or tmp)
        events = {d.tag: day_events(d, work) for d in normal + attack}
        ruleset = load_ruleset() if any("rules" in a for a in ablation) else None  # loaded once, frozen
        labels = {d.tag: frame_labels(d.labels) if d.labels else (set(), 0, None, None, []) for d in days}

        def span(d: Day) -> tuple[float, float]:
            _, _, t0, t1, _ = labels[d.tag]
            evs = events.get(d.tag) or []
            if t0 is None and evs:
                t0, t1 = min(e.ts for e in evs), max(e.ts for e in evs)
            return t0 or 0.0, t1 or 0.0

        report: dict[str, Any] = {
            "dataset": str(directory),
            "normal_days": [d.tag for d in normal],
            "attack_days": [d.tag for d in attack],
            "definitions": {"slack_s": [SLACK_BEFORE, SLACK_AFTER], "incident_gap_s": INCIDENT_GAP_S},
        }
        ablation_out, single_out = [], []
        full: dict[str, Any] | None = None
        for n_run, layers in enumerate([*ablation, *single]):
            state = work / ("state-" + "-".join(layers))
            _learn([events[d.tag] for d in normal], layers, state, ruleset)
            per_window, per_type, per_day = [], defaultdict(list), {}
            false_inc, hours = 0, 0.0
            flagged_all, pos_all = 0, 0
            tp_all = 0
            for d in attack:
                alerts, raw = _detect(events[d.tag], layers, state, ruleset)
                t0, t1 = span(d)
                sd = score_day([a.ts for a in alerts], d.windows, t0, t1, labels[d.tag][4])
                for w in sd["windows"]:
                    per_window.append(w)
                    per_type[w["attack"]].append(w)
                false_inc += sd["false_incidents"]
                hours += sd["hours"]
                flagged = {f for a in raw for f in a.origin.frames}
                pos = labels[d.tag][0]
                tp_all += len(flagged & pos)
                flagged_all += len(flagged)
                pos_all += len(pos)
                per_day[d.tag] = {
                    **_summary(sd["windows"], sd["false_incidents"], sd["hours"]),
                    "alerts": len(alerts),
                    "frames": _prf(flagged, pos),
                    "by_detector": _count_by(alerts),
                }
            summ = _summary(per_window, false_inc, hours)
            p = tp_all / flagged_all if flagged_all else 0.0
            r = tp_all / pos_all if pos_all else 0.0
            summ["frame_precision"], summ["frame_recall"] = round(p, 4), round(r, 4)
            summ["frame_f1"] = round(2 * p * r / (p + r), 4) if p + r else 0.0
            recall_by_type = {k: _summary(v, 0, 0.0)["window_recall"] for k, v in sorted(per_type.items())}
            (ablation_out if n_run < len(ablation) else single_out).append(
                {"layers": list(layers), **summ, "per_attack_type_recall": recall_by_type}
            )
            if n_run == len(ablation) - 1:
                full = {
                    "overall": summ,
                    "per_attack_type": {k: _summary(v, 0, 0.0) for k, v in sorted(per_type.items())},
                    "per_dataset": per_day,
                }
        report.update(full or {})
        for t in report.get("per_attack_type", {}).values():
            for k in ("false_incidents", "attack_free_hours", "false_incidents_per_hour"):
                t.pop(k, None)
        report["ablation"] = ablation_out
        report["single_layer"] = single_out
        report["control_cv"] = _control_cv(normal, events, span, work, list(ablation[-1]), ruleset)
    report["series"] = series_track(days, series_learn_s)
    return report


def _count_by(alerts: Sequence[Event]) -> dict[str, int]:
    c: dict[str, int] = defaultdict(int)
    for a in alerts:
        c[str(a.fields.get("rule_id") or a.fields.get("detector"))] += 1
    return dict(sorted(c.items()))


def _control_cv(
    normal: Sequence[Day],
    events: dict[str, list[Event]],
    span: Any,
    work: Path,
    layers: list[str],
    ruleset: Any | None = None,
) -> dict[str, Any]:
    """Each normal day scored by layers learned on the other normal days: the false-alarm estimate."""
    if len(normal) < 2:
        return {}
    out, total_inc, total_h = {}, 0, 0.0
    for d in normal:
        state = work / f"cv-{d.tag}"
        _learn([events[o.tag] for o in normal if o is not d], layers, state, ruleset)
        alerts, _ = _detect(events[d.tag], layers, state, ruleset)
        t0, t1 = span(d)
        sd = score_day([a.ts for a in alerts], [], t0, t1)
        out[d.tag] = {
            "alerts": len(alerts),
            "false_incidents": sd["false_incidents"],
            "hours": round(sd["hours"], 2),
            "by_detector": _count_by(alerts),
        }
        total_inc += sd["false_incidents"]
        total_h += sd["hours"]
    out["false_incidents_per_hour"] = round(total_inc / total_h, 4) if total_h else None
    return out


# ---------------------------------------------------------------------- second track: per-second series
def victim_columns(columns: Sequence[str]) -> list[str]:
    """Series columns of the victims' vantage points: not the attacker's port, not the attacker's MAC."""
    return [
        c
        for c in columns
        if c != "second" and not c.startswith("attacker_") and not c.endswith("_attacker_mac")
    ]


def link_pairs(columns: Sequence[str]) -> list[tuple[str, str]]:
    """(slave_<proto>, master_<proto>) column pairs: the two ends of the master-outstation link."""
    return [
        (c, "master_" + c[6:]) for c in columns if c.startswith("slave_") and "master_" + c[6:] in columns
    ]


def series_track(
    days: Sequence[Day], learn_s: float = 7200.0, pair_log: bool = True, cusum: bool = True
) -> dict[str, Any]:
    """Window recall of the per-second-counts model (see the module docstring); with `cusum`, also a
    two-sided CUSUM over each link pair's per-second difference (CUSUM_K, CUSUM_H)."""
    from detect.models.cusum import Cusum
    from detect.models.series import SeriesModel

    per_window, flood, per_day = [], [], {}
    false_inc, hours = 0, 0.0
    for d in days:
        if d.series is None or d.start is None or d.normal:
            continue
        cols, M = read_series(d.series)
        vc = victim_columns(cols)
        idx = [cols.index(c) for c in vc]
        sec = M[:, cols.index("second")] if "second" in cols else np.arange(len(M), dtype=float)
        X = M[:, idx]
        n_learn = int(min(learn_s, len(X) // 2))
        pairs = link_pairs(vc)
        model = SeriesModel(vc, pairs=pairs, pair_log=pair_log).fit(X[:n_learn])
        flags = model.decision(X) < 0
        if cusum and pairs:
            diff = X[:, [vc.index(a) for a, _ in pairs]] - X[:, [vc.index(b) for _, b in pairs]]
            flags |= Cusum(CUSUM_K, CUSUM_H).fit(diff[:n_learn]).alarms(diff)
        alert_ts = [d.start + s + 1.0 for s, v in zip(sec[n_learn:], flags[n_learn:], strict=True) if v]
        t_learn_end = d.start + float(sec[n_learn - 1]) + 1.0 if n_learn else d.start
        scored = [w for w in d.windows if w[1] - SLACK_BEFORE >= t_learn_end]
        sd = score_day(alert_ts, scored, t_learn_end, d.start + float(sec[-1]) + 1.0)
        per_window.extend(sd["windows"])
        flood.extend(w for w in sd["windows"] if "flooding" in w["attack"])
        false_inc += sd["false_incidents"]
        hours += sd["hours"]
        per_day[d.tag] = {
            **_summary(sd["windows"], sd["false_incidents"], sd["hours"]),
            "not_scored_windows": len(d.windows) - len(scored),
            "learn_s": n_learn,
        }
    if not per_window:
        return {}
    s = _summary(per_window, false_inc, hours)
    f = _summary(flood, 0, 0.0)
    per_type: dict[str, list[dict[str, Any]]] = {}
    for w in per_window:
        per_type.setdefault(w["attack"], []).append(w)
    return {
        "learn_s": learn_s,
        "pair_log": pair_log,
        "cusum": {"k": CUSUM_K, "h": CUSUM_H} if cusum else None,
        "columns": "victim side (master_*, slave_*; no *_attacker_mac); pairs slave_<proto> - master_<proto>",
        **s,
        "per_attack_type": {
            k: {n: _summary(v, 0, 0.0)[n] for n in ("windows", "detected", "window_recall")}
            for k, v in sorted(per_type.items())
        },
        "flooding_windows": f["windows"],
        "flooding_detected": f["detected"],
        "flooding_window_recall": f["window_recall"],
        "per_dataset": per_day,
    }


# ---------------------------------------------------------------------- table
def table(report: dict[str, Any]) -> str:
    """The report as the text table docs/detection.md shows."""
    lines = []
    o = report.get("overall", {})

    def pct(x: float | None) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"

    lines.append(
        f"dataset {report['dataset']}: learn on {', '.join(report['normal_days'])}; "
        f"score {len(report['attack_days'])} attack days"
    )
    lines.append(
        f"windows {o.get('detected')}/{o.get('windows')} = {pct(o.get('window_recall'))}; false incidents "
        f"{o.get('false_incidents')} in {o.get('attack_free_hours')} h = "
        f"{o.get('false_incidents_per_hour')}/h; TTD median {o.get('ttd_median_s')} s, "
        f"p90 {o.get('ttd_p90_s')} s;"
        f" frames P {o.get('frame_precision')}"
        f" R {o.get('frame_recall')} F1 {o.get('frame_f1')}; TTD from the first attack frame: median "
        f"{o.get('ttd_first_frame_median_s')} s, p90 {o.get('ttd_first_frame_p90_s')} s"
    )
    lines.append("")
    lines.append(
        "| layers | window recall | false incidents/h | TTD median s | TTD p90 s "
        "| frame P | frame R | frame F1 |"
    )
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for a in [*report.get("ablation", []), *report.get("single_layer", [])]:
        lines.append(
            f"| {' + '.join(a['layers'])} | {a['detected']}/{a['windows']} ({pct(a['window_recall'])}) | "
            f"{a['false_incidents_per_hour']} | {a['ttd_median_s']} | {a['ttd_p90_s']} | "
            f"{a['frame_precision']} | {a['frame_recall']} | {a['frame_f1']} |"
        )
    lines.append("")
    lines.append(
        "| attack type | windows | detected | recall | TTD median s | TTD from first attack frame s |"
    )
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for k, t in report.get("per_attack_type", {}).items():
        lines.append(
            f"| {k} | {t['windows']} | {t['detected']} | {pct(t['window_recall'])} | {t['ttd_median_s']} | "
            f"{t['ttd_first_frame_median_s']} |"
        )
    cv = report.get("control_cv") or {}
    if cv:
        lines.append("")
        lines.append(
            f"control days, leave-one-day-out: {cv.get('false_incidents_per_hour')} false incidents/h "
            + "; ".join(
                f"{k}: {v['false_incidents']} in {v['hours']} h" for k, v in cv.items() if isinstance(v, dict)
            )
        )
    s = report.get("series") or {}
    if s:
        lines.append("")
        lines.append(
            f"series track (per-second victim counts, learn first {s['learn_s']:g} s of each day): windows "
            f"{s['detected']}/{s['windows']} ({pct(s['window_recall'])}), flooding "
            f"{s['flooding_detected']}/{s['flooding_windows']} ({pct(s['flooding_window_recall'])}), "
            f"false incidents/h {s['false_incidents_per_hour']}, TTD median {s['ttd_median_s']} s"
        )
        lines.append("")
        lines.append("| attack type (series track) | windows | detected | recall |")
        lines.append("| --- | --- | --- | --- |")
        for k, t in s.get("per_attack_type", {}).items():
            lines.append(f"| {k} | {t['windows']} | {t['detected']} | {pct(t['window_recall'])} |")
    return "\n".join(lines)
