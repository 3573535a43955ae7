"""The detection criterion on the cyber range: every injected attack detected, no alert on clean days.

For each site (a `<site>_baseline` / `<site>_attack` scenario pair) this writes a dataset in the layout
of `detect.eval` (the QUT split's) and runs that harness unchanged:

- `control_<site>`: the baseline scenario at its own seed, `learn_s` long: every layer learns it (the
  rules too: what they raise on it becomes the site's rule tuning, `detect.tuning`);
- `clean<N>_<site>`: the baseline scenario at other seeds (another day of the same plant: same hosts,
  polls and process, different noise, jitter and operator timing), `score_s` long, with no attack
  window, so every alert on it is a false alarm;
- `attack_<site>`: the attack scenario at yet another seed, `score_s` long, with its attack windows.

`evaluate_range` returns, per site, the harness report and the criterion: the attacks missed, the alerts
on the clean days (each listed), and whether both are empty. `icsight range eval` prints it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from cyberrange.generator import Range
from cyberrange.scenario import SCENARIO_DIR, load_scenario

SEED_STEP = 1000   # clean day N uses seed + N * SEED_STEP; the attack day the next step


def sites() -> list[str]:
    """Sites with both a `<site>_baseline` and a `<site>_attack` scenario in the shipped library."""
    base = {p.stem[: -len("_baseline")] for p in SCENARIO_DIR.glob("*_baseline.yml")}
    return sorted(s for s in base if (SCENARIO_DIR / f"{s}_attack.yml").exists())


def build_dataset(
    site: str, directory: Path, learn_s: float = 4 * 3600.0, score_s: float = 3600.0, clean_days: int = 1
) -> list[str]:
    """Generate the site's days into `directory` (see the module docstring); returns their tags.

    :raise ValueError: the attack scenario's attacks do not fit into `score_s`.
    """
    directory.mkdir(parents=True, exist_ok=True)
    attack = load_scenario(f"{site}_attack", duration=score_s)
    last = max((a.start for a in attack.attacks), default=0.0)
    if last >= score_s:
        raise ValueError(f"{site}_attack: its last attack starts at {last:.0f}s, after the {score_s:.0f}s "
                         "scored (raise --score)")
    days = [("control_" + site, f"{site}_baseline", learn_s, 0)]
    days += [(f"clean{n}_{site}", f"{site}_baseline", score_s, n) for n in range(1, clean_days + 1)]
    days.append(("attack_" + site, f"{site}_attack", score_s, clean_days + 1))
    for tag, scenario, duration, step in days:
        sc = load_scenario(scenario, duration=duration)
        d = directory
        Range(sc, sc.seed + step * SEED_STEP).run(
            d / f"{tag}.pcap", d / f"{tag}.frame_labels.csv", d / f"{tag}.attack_windows.csv"
        )
    return [d[0] for d in days]


def _attacks(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return [r["attack"] for r in csv.DictReader(f)]


def evaluate_site(
    site: str, directory: Path, learn_s: float, score_s: float, clean_days: int, ablation: bool = True
) -> dict[str, Any]:
    """Generate and score one site; the harness report plus `criterion`."""
    from detect.eval import ABLATION, SINGLE, evaluate

    build_dataset(site, directory, learn_s, score_s, clean_days)
    rep = evaluate(directory, ablation=ABLATION if ablation else ABLATION[-1:],
                   single=SINGLE if ablation else ())
    injected = _attacks(directory / f"attack_{site}.attack_windows.csv")
    detected = {k for k, v in rep.get("per_attack_type", {}).items() if v.get("detected")}
    clean = {k: v for k, v in rep.get("per_dataset", {}).items() if k.startswith("clean")}
    missed = [a for a in injected if a not in detected]
    clean_alerts = sum(v["alerts"] for v in clean.values())
    rep["criterion"] = {
        "attacks": len(injected),
        "attacks_detected": len(injected) - len(missed),
        "attacks_missed": missed,
        "clean_days": len(clean),
        "clean_hours": round(sum(v["attack_free_hours"] for v in clean.values()), 3),
        "clean_day_alerts": clean_alerts,
        "clean_day_alerts_by_detector": {k: v["by_detector"] for k, v in clean.items() if v["alerts"]},
        "met": not missed and clean_alerts == 0,
    }
    return rep


def evaluate_range(
    site_names: list[str],
    work_dir: Path,
    learn_s: float = 4 * 3600.0,
    score_s: float = 3600.0,
    clean_days: int = 1,
    ablation: bool = True,
) -> dict[str, Any]:
    """`evaluate_site` for each site (datasets under `work_dir/<site>`); `met` when every site meets it."""
    out = {s: evaluate_site(s, work_dir / s, learn_s, score_s, clean_days, ablation) for s in site_names}
    return {"sites": out, "met": all(r["criterion"]["met"] for r in out.values()),
            "learn_s": learn_s, "score_s": score_s, "clean_days": clean_days}


def table(report: dict[str, Any]) -> str:
    """Text summary: per site the criterion, per attack the time to detect, and the ablation."""
    lines = [
        f"learn {report['learn_s']:g} s of each baseline; score {report['clean_days']} clean day(s) and the "
        f"attack day, {report['score_s']:g} s each",
        "",
        "| site | attacks detected | alerts on clean days (h) | attack day: false incidents/h | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for site, r in report["sites"].items():
        c = r["criterion"]
        att = r["per_dataset"].get(f"attack_{site}", {})
        lines.append(
            f"| {site} | {c['attacks_detected']}/{c['attacks']} | {c['clean_day_alerts']} "
            f"({c['clean_hours']} h) | "
            f"{att.get('false_incidents_per_hour')} | {'yes' if c['met'] else 'NO'} |"
        )
    for site, r in report["sites"].items():
        c = r["criterion"]
        lines += ["", f"{site}: " + (f"missed {', '.join(c['attacks_missed'])}" if c["attacks_missed"] else
                                     "every attack detected")]
        for det, n in c["clean_day_alerts_by_detector"].items():
            lines.append(f"  clean-day alerts {det}: {n}")
        lines.append("| attack | detected | TTD s |")
        lines.append("| --- | --- | --- |")
        for k, t in r.get("per_attack_type", {}).items():
            lines.append(f"| {k} | {t['detected']}/{t['windows']} | {t['ttd_median_s']} |")
        if len(r.get("ablation", [])) > 1:
            lines.append("| layers | attacks detected | false incidents/h |")
            lines.append("| --- | --- | --- |")
            for a in [*r["ablation"], *r.get("single_layer", [])]:
                lines.append(f"| {' + '.join(a['layers'])} | {a['detected']}/{a['windows']} | "
                             f"{a['false_incidents_per_hour']} |")
    lines += ["", "criterion met" if report["met"] else "criterion NOT met"]
    return "\n".join(lines)
