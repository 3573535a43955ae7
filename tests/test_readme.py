"""The README's examples stay true: its scenario example validates and generates."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_scenario_example_is_valid(tmp_path):
    from cyberrange.generator import Range
    from cyberrange.scenario import load_scenario

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("name: water_mini")
    example = text[start:text.index("```", start)]
    path = tmp_path / "water_mini.yml"
    path.write_text(example, encoding="utf-8")
    sc = load_scenario(str(path), duration=15 * 60.0)
    summary = Range(sc).run(tmp_path / "x.pcap", tmp_path / "x.csv", tmp_path / "x.windows.csv")
    assert summary["frames"] > 1000
    assert {a.name for a in sc.attacks} == {"unit-scan", "setpoint-write"}
