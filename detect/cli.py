"""`icsight rules ...`: lint, test (examples), list, run (the rule layer over captures).

Registered by icsight/cli.py when this module exists (`detect`, `alerts`, `eval` live in
detect/cli_learn.py). stdout carries the requested data; summaries go to stderr. Exit codes: 0 ok,
1 a rule test failed, E_CONFIG (5) invalid rules / lint errors, E_CAPTURE (3) unreadable capture.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from icsight import errors


def _rules_dir(directory: str | None) -> Path:
    from detect.ruleset import RULES_DIR

    return Path(directory) if directory else RULES_DIR


def _load(directory: str | None):
    from detect.ruleset import InvalidRule, load_rules

    try:
        return load_rules(_rules_dir(directory))
    except InvalidRule as e:
        click.echo(f"icsight: invalid rules:\n{e}", err=True)
        sys.exit(errors.E_CONFIG)


@click.group()
def rules() -> None:
    """Detection rules: lint, prove against captures, list (规则管理)."""


@rules.command("lint")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--quiet", is_flag=True, help="Hide info-level issues.")
def rules_lint(directory: str | None, quiet: bool) -> None:
    """Lint every rule under DIRECTORY (default: the project's rules/). Exit 5 on errors."""
    from detect.lint import main as lint_main

    code = lint_main([str(_rules_dir(directory))] + (["--quiet"] if quiet else []))
    sys.exit(errors.E_CONFIG if code else errors.E_OK)


@rules.command("test")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("-k", "select", default=None, help="Only rules whose id contains this text.")
@click.option("-v", "--verbose", is_flag=True, help="Print passing examples too.")
def rules_test(directory: str | None, select: str | None, verbose: bool) -> None:
    """Run each rule over its example captures (must fire) and negative captures (must stay silent)."""
    from detect.rule_examples import FAIL, PASS, check_rules

    rs = [r for r in _load(directory) if select is None or select in r.id]
    results = check_rules(rs)
    for res in results:
        if verbose or res.outcome != PASS:
            click.echo(str(res))
    n = {k: sum(1 for r in results if r.outcome == k) for k in (PASS, FAIL, "skip")}
    click.echo(f"{len(rs)} rules, {len(results)} examples: {n[PASS]} passed, {n[FAIL]} failed, "
               f"{n['skip']} skipped", err=True)
    sys.exit(1 if n[FAIL] else errors.E_OK)


@rules.command("list")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--markdown", is_flag=True, help="A Markdown table (the one in docs/rules.md).")
def rules_list(directory: str | None, markdown: bool) -> None:
    """List the rules: id, protocol, techniques, severity, title."""
    rs = sorted(_load(directory), key=lambda r: (r.protocol, r.id))
    if markdown:
        click.echo(rule_table(rs))
        return
    for r in rs:
        click.echo(f"{r.id:45} {r.protocol:13} {r.severity:9} {','.join(r.techniques):18} {r.title.zh}")


def rule_table(rs) -> str:
    """The Markdown rule table of docs/rules.md (generated: `icsight rules list --markdown`)."""
    lines = ["| id | protocol | techniques | severity | title |", "| --- | --- | --- | --- | --- |"]
    for r in rs:
        lines.append(f"| `{r.id}` | {r.protocol} | {', '.join(r.techniques)} | {r.severity} | "
                     f"{r.title.zh} / {r.title.en} |")
    return "\n".join(lines)


@rules.command("run")
@click.argument("captures", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--rules", "rules_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Rules directory (default: the project's rules/).")
@click.option("--jsonl", is_flag=True, help="Print alerts as JSON lines (default: one summary line each).")
def rules_run(captures: tuple[str, ...], rules_dir: str | None, jsonl: bool) -> None:
    """Parse CAPTURES and print the alerts the rules raise (the rule layer only)."""
    from detect.engine import RuleEngine
    from icsight.errors import CaptureError
    from sensors.run import events_from_capture

    eng = RuleEngine(_load(rules_dir))
    n = 0
    for c in captures:
        try:
            events = events_from_capture(c)
        except CaptureError as e:
            click.echo(f"icsight: {e}", err=True)
            sys.exit(errors.E_CAPTURE)
        for a in eng.run(events):
            n += 1
            if jsonl:
                click.echo(a.to_json())
            else:
                f = a.fields
                click.echo(f"{a.origin.capture} frames {list(a.origin.frames)[:8]} {f['severity']:8} "
                           f"{f['rule_id']}: {f['reason']['en']}")
    click.echo(f"{n} alerts ({eng.suppressed} suppressed duplicates)", err=True)
