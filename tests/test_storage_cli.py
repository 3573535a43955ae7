"""`icsight events` and `icsight assets` over a real store filled from a real capture."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from icsight import errors
from icsight.cli_query import assets, events, parse_time
from icsight.events import Event
from icsight.settings import Settings
from sensors.assets import AssetInventory
from sensors.run import events_from_capture
from storage import open_store
from tests.conftest import PCAPS, need_shared


@pytest.fixture
def filled_dir(data_dir: Path) -> tuple[Path, list[Event]]:
    cap = need_shared(PCAPS / "modbus" / "mod_43.pcap")
    st = open_store(Settings(data_dir=data_dir))
    try:
        evs = events_from_capture(cap, observers=[AssetInventory.from_store(st)])
        st.append(evs)
    finally:
        st.close()
    return data_dir, evs


def run(cmd, *args: str):
    return CliRunner().invoke(cmd, list(args), catch_exceptions=False)


def test_parse_time():
    assert parse_time("1558063241.5") == 1558063241.5
    assert parse_time("2019-05-17T03:20:41Z") == 1558063241.0
    assert parse_time("2019-05-17T03:20:41") == 1558063241.0          # no offset: UTC
    assert parse_time("2019-05-17T05:20:41+02:00") == 1558063241.0
    assert parse_time("2019-05-17") == 1558051200.0
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_events_json_lines_are_the_stored_events(filled_dir):
    d, evs = filled_dir
    r = run(events, "--data-dir", str(d), "--json")
    assert r.exit_code == 0
    assert sorted(r.stdout.splitlines()) == sorted(e.to_json() for e in evs)


def test_events_filters(filled_dir):
    d, evs = filled_dir
    r = run(events, "--data-dir", str(d), "--json", "--kind", "asset", "--ip", "84.240.225.194")
    got = [Event.from_json(line) for line in r.stdout.splitlines()]
    assert got and all(e.kind == "asset" and e.src.ip == "84.240.225.194" for e in got)
    r = run(events, "--data-dir", str(d), "--json", "--protocol", "modbus", "--field", "func_code=43",
            "--field", "status=paired")
    got = [json.loads(line) for line in r.stdout.splitlines()]
    expect = [e for e in evs if e.kind == "modbus" and e.fields.get("func_code") == 43
              and e.fields.get("status") == "paired"]
    assert len(got) == len(expect) >= 1
    assert got[0]["fields"]["identity"]["vendor"] == "Schneider Electric"
    r = run(events, "--data-dir", str(d), "--json", "--field", "func_code=3")
    assert r.stdout == ""
    last = max(e.ts for e in evs)
    r = run(events, "--data-dir", str(d), "--json", "--since", str(last))
    assert {Event.from_json(x).ts for x in r.stdout.splitlines()} == {last}
    r = run(events, "--data-dir", str(d), "--json", "--until", "2019-05-17T03:20:41Z")
    assert r.stdout == ""                                   # the capture starts later
    r = run(events, "--data-dir", str(d), "--json", "--limit", "2")
    assert len(r.stdout.splitlines()) == 2


def test_events_table(filled_dir):
    d, _ = filled_dir
    r = run(events, "--data-dir", str(d), "--kind", "modbus")
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["time", "(UTC)", "kind"]
    assert "2019-05-17T03:20:41.905004Z" in lines[1] and "192.168.166.24:41116" in lines[1]
    assert "func=ENCAPSULATED_INTERFACE_TRANSPORT" in lines[1]


def test_assets_views(filled_dir):
    d, _ = filled_dir
    r = run(assets, "--data-dir", str(d), "--json")
    recs = {x["ip"]: x for x in map(json.loads, r.stdout.splitlines())}
    assert recs["84.240.225.194"]["identity"]["product_code"][0]["value"] == "BMX P34 2020"
    assert recs["84.240.225.194"]["tenant"] == "default"
    r = run(assets, "--data-dir", str(d))
    row = next(x for x in r.stdout.splitlines() if x.startswith("84.240.225.194"))
    for part in ("00:1d:a1:b3:88:40", "Cisco", "modbus:server", "tcp/502:server",
                 "vendor=Schneider Electric"):
        assert part in row


def test_exit_codes(tmp_path: Path, filled_dir):
    r = CliRunner().invoke(events, ["--data-dir", str(tmp_path / "none")])
    assert r.exit_code == errors.E_STORE and "no event store" in r.stderr
    assert not (tmp_path / "none").exists()
    r = CliRunner().invoke(assets, ["--data-dir", str(tmp_path / "none")])
    assert r.exit_code == errors.E_STORE
    r = CliRunner().invoke(events, ["--data-dir", str(tmp_path), "--since", "soon"])
    assert r.exit_code == errors.E_USAGE and "neither epoch seconds nor ISO 8601" in r.stderr
    d, _ = filled_dir
    r = CliRunner().invoke(events, ["--data-dir", str(d), "--field", "nokey"])
    assert r.exit_code == errors.E_USAGE
    con = sqlite3.connect(d / "events.sqlite")
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    r = CliRunner().invoke(assets, ["--data-dir", str(d)])
    assert r.exit_code == errors.E_STORE and "newer" in r.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "icsight.yml").write_text("nope: 1\n")
    r = CliRunner().invoke(events, ["--data-dir", str(tmp_path / "bad")])
    assert r.exit_code == errors.E_CONFIG
