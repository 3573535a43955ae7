"""`icsight range`: list the shipped scenarios, generate a labeled capture, replay it onto an interface.

stdout carries only requested data (the scenario list); progress and summaries go to stderr.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from icsight import errors


@click.group("range")
def range() -> None:
    """Cyber range (数字镜像/安全靶场): scenario -> labeled pcap; replay onto an interface."""


@range.command("list")
def range_list() -> None:
    """The shipped scenarios, one line each."""
    from cyberrange.scenario import list_scenarios

    for name, desc in list_scenarios():
        click.echo(f"{name:<22} {desc}")


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from cyberrange.scenario import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@range.command("run")
@click.argument("scenario")
@click.option("-o", "--output", "pcap", required=True, type=click.Path(dir_okay=False), help="pcap to write.")
@click.option(
    "--labels",
    type=click.Path(dir_okay=False),
    default=None,
    help="Per-frame labels CSV (frame_no,time,label,technique,src,dst).",
)
@click.option(
    "--windows",
    type=click.Path(dir_okay=False),
    default=None,
    help="Attack windows CSV (attack,technique,hosts,start,end).",
)
@click.option(
    "--duration", callback=_duration, default=None, help="Override the scenario's duration (e.g. 10m)."
)
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
def range_run(
    scenario: str,
    pcap: str,
    labels: str | None,
    windows: str | None,
    duration: float | None,
    seed: int | None,
) -> None:
    """Generate SCENARIO (a shipped name or a YAML path) into a pcap with labels."""
    from cyberrange.generator import Range
    from cyberrange.scenario import ScenarioError, load_scenario

    try:
        sc = load_scenario(scenario, duration=duration)
    except ScenarioError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_CONFIG)
    t = time.perf_counter()

    def progress(pt: float) -> None:
        if sys.stderr.isatty():
            click.echo(f"\r{sc.name}: {pt / sc.duration:6.1%} of {sc.duration:.0f}s", err=True, nl=False)

    try:
        summary = Range(sc, seed).run(pcap, labels, windows, progress=progress)
    except ValueError as e:  # an attack that cannot run in this scenario
        click.echo(f"\nicsight: {sc.name}: {e}", err=True)
        sys.exit(errors.E_CONFIG)
    dt = time.perf_counter() - t
    if sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(
        f"{sc.name}: {summary['frames']} frames, {sc.duration:.0f}s of plant time in {dt:.1f}s "
        f"({summary['frames'] / max(dt, 1e-9):,.0f} frames/s) -> {pcap}",
        err=True,
    )
    click.echo(
        "expected events: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["expected"].items())), err=True
    )
    for w in summary["windows"]:
        click.echo(
            f"  {w['attack']:<22} {w['technique']:<6} +{w['start'] - sc_start(sc):8.1f}s "
            f"{w['end'] - w['start']:7.1f}s  {' '.join(w['hosts'][:4])}",
            err=True,
        )


def sc_start(sc: Any) -> float:
    """The scenario's t=0 as epoch seconds."""
    from datetime import datetime

    return datetime.fromisoformat(sc.start.replace("Z", "+00:00")).timestamp()


@range.command("replay")
@click.argument("pcap", type=click.Path(exists=True, dir_okay=False))
@click.option("--iface", required=True, help="Interface to send on (e.g. lo, or one end of a veth pair).")
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="Time multiplier: 1 = recorded pace, 10 = ten times faster, 0 = as fast as possible.",
)
@click.option("--count", type=int, default=0, help="Stop after this many frames.")
@click.option("--max-gap", type=float, default=None, help="Cap on any wait between two frames (seconds).")
def range_replay(pcap: str, iface: str, speed: float, count: int, max_gap: float | None) -> None:
    """Send the frames of PCAP on IFACE at the recorded (or multiplied) pace."""
    from cyberrange.replay import replay

    t = time.perf_counter()
    try:
        n = replay(pcap, iface, speed, count, max_gap)
    except (OSError, PermissionError) as e:
        click.echo(f"icsight: cannot replay on {iface}: {e}", err=True)
        sys.exit(errors.E_INTERFACE)
    click.echo(f"{n} frames sent on {iface} in {time.perf_counter() - t:.1f}s", err=True)


@range.command("eval")
@click.argument("sites", nargs=-1)
@click.option("--learn", "learn_s", callback=_duration, default="4h", show_default=True,
              help="Length of the baseline day every layer learns.")
@click.option("--score", "score_s", callback=_duration, default="1h", show_default=True,
              help="Length of each scored day (clean days and the attack day).")
@click.option("--clean-days", type=click.IntRange(1, 20), default=1, show_default=True,
              help="Clean baseline days (other seeds) to score; any alert on them is a false alarm.")
@click.option("--no-ablation", is_flag=True, help="Only the full detector (faster).")
@click.option("--keep", type=click.Path(file_okay=False), default=None,
              help="Write the generated datasets here and keep them (default: a temporary directory).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def range_eval(
    sites: tuple[str, ...],
    learn_s: float,
    score_s: float,
    clean_days: int,
    no_ablation: bool,
    keep: str | None,
    as_json: bool,
) -> None:
    """Every injected attack detected, no alert on clean days: per SITE (default all), learn its baseline
    day, score clean days and the attack day with the detection harness (`icsight eval`).

    Exit status 1 when an attack is missed or a clean day raised an alert.
    """
    import json
    import tempfile
    from pathlib import Path

    from cyberrange.evaluate import evaluate_range, table
    from cyberrange.evaluate import sites as known_sites

    names = list(sites) or known_sites()
    unknown = [s for s in names if s not in known_sites()]
    if unknown:
        raise click.BadParameter(f"unknown site(s) {', '.join(unknown)} (known: {', '.join(known_sites())})")
    with tempfile.TemporaryDirectory(prefix="icsight-range-eval-") as tmp:
        try:
            rep = evaluate_range(names, Path(keep or tmp), learn_s, score_s, clean_days, not no_ablation)
        except ValueError as e:
            click.echo(f"icsight: {e}", err=True)
            sys.exit(errors.E_CONFIG)
    click.echo(json.dumps(rep, default=str, ensure_ascii=False) if as_json else table(rep))
    sys.exit(0 if rep["met"] else 1)
