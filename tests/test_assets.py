"""Asset inventory: devices, MACs and vendors, roles, protocols and identity from real captures and
hand-built events; announcements only when something is new; seeding from a real store."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from icsight.events import Endpoint, Event, Origin, make_event_id
from icsight.settings import Settings
from sensors.assets import AssetInventory, is_unicast_ip, mac_vendor, observe
from sensors.run import events_from_capture
from storage import EventQuery, open_store
from tests.conftest import PCAPS, need_shared

T0 = 1_600_000_000.0
PLC_MAC, HMI_MAC = "00:80:f4:00:00:02", "00:0c:29:00:00:01"


def ev(i: int, kind: str = "modbus", src: Endpoint | None = None, dst: Endpoint | None = None,
       fields: dict | None = None, ts: float | None = None, tenant: str = "default") -> Event:
    return Event(make_event_id("s1", "hand.pcap", i), T0 + i if ts is None else ts, kind, tenant, "s1",
                 src or Endpoint("10.0.0.1", 40000, HMI_MAC), dst or Endpoint("10.0.0.2", 502, PLC_MAC),
                 "read", fields if fields is not None else {"func": "READ_COILS"},
                 Origin("hand.pcap", (i, i + 1)))


def assets_of(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind == "asset"]


# ---------------------------------------------------------------------------- helpers
def test_mac_vendor_from_the_offline_manuf_database():
    from scapy.libs.manuf import DATA  # the copy bundled with scapy: no Wireshark, no network

    assert "00:80:F4" in DATA and "00:0C:29" in DATA
    assert mac_vendor("00:80:f4:12:34:56") == "Telemechanique Electrique"      # Schneider's old OUI
    assert mac_vendor("00:0C:29:AA:BB:CC") == "VMware, Inc."
    assert mac_vendor("00:1d:9c:00:00:01").startswith("Rockwell")
    assert mac_vendor("02:00:00:00:00:01") is None        # locally administered: no OUI
    assert mac_vendor("ff:ff:ff:ff:ff:ff") is None        # broadcast
    assert mac_vendor("01:0c:cd:01:00:01") is None        # multicast (GOOSE)
    assert mac_vendor("fc:ff:ff:00:00:00") is None or isinstance(mac_vendor("fc:ff:ff:00:00:00"), str)
    assert mac_vendor("") is None and mac_vendor("zz:zz:zz:00:00:00") is None


@pytest.mark.parametrize(("ip", "ok"), [("10.0.0.1", True), ("127.0.0.1", True), ("fe80::1", True),
                                        ("255.255.255.255", False), ("224.0.0.5", False),
                                        ("0.0.0.0", False), ("ff02::1", False), ("::", False),
                                        ("not-an-ip", False)])
def test_unicast_ip(ip: str, ok: bool):
    assert is_unicast_ip(ip) is ok


# ---------------------------------------------------------------------------- real captures
def test_modbus_device_identification_is_attributed_to_the_server():
    cap = need_shared(PCAPS / "modbus" / "mod_43.pcap")
    inv = AssetInventory()
    events = events_from_capture(cap, observers=[inv])
    recs = {r["ip"]: r for r in inv.records()}
    plc, client = recs["84.240.225.194"], recs["192.168.166.24"]
    ident_event = next(e for e in events if e.kind == "modbus" and "identity" in e.fields)
    assert plc["identity"]["vendor"] == [{"value": "Schneider Electric", "event": ident_event.id,
                                          "frames": list(ident_event.frames)}]
    assert plc["identity"]["product_code"][0]["value"] == "BMX P34 2020"
    assert plc["identity"]["firmware"][0]["value"] == "v2.5"
    assert client["identity"] == {}                        # identity_of defaults to dst
    assert plc["roles"] == {"modbus": ["server"], "tcp/502": ["server"]}
    assert client["roles"] == {"modbus": ["client"], "tcp/502": ["client"]}
    assert plc["protocols"] == client["protocols"] == ["modbus"]
    assert plc["mac"] == "00:1d:a1:b3:88:40" and plc["vendor"].startswith("Cisco")   # routed: the gateway
    # the announcement of the PLC names what it revealed, and points at the frames that revealed it
    first = next(e for e in assets_of(events) if e.src.ip == "84.240.225.194")
    assert first.fields["changes"][0] == "new"
    assert "identity:vendor=Schneider Electric" in first.fields["changes"]
    assert first.origin.frames == ident_event.origin.frames and first.ts == ident_event.ts
    assert (first.action, first.dst, first.src.mac) == ("discover", Endpoint(), plc["mac"])


def test_announcements_are_few_on_a_long_capture():
    cap = need_shared(PCAPS / "modbus" / "ModbusTCP.pcap")
    inv = AssetInventory()
    events = events_from_capture(cap, observers=[inv])
    kinds = Counter(e.kind for e in events)
    per_device = Counter(e.src.ip for e in assets_of(events))
    assert kinds["modbus"] > 5000
    assert set(per_device) == {r["ip"] for r in inv.records()}
    # new + one per new role/protocol/MAC batch + one end-of-capture snapshot: never per packet
    assert max(per_device.values()) <= 4, per_device
    learned = ("new", "role:", "protocol:", "identity:", "mac:", "mac_changed:")
    finals = [e for e in assets_of(events) if not any(c.startswith(learned) for c in e.fields["changes"])]
    assert len(finals) <= len(per_device)                  # at most one snapshot per device
    assert len({e.id for e in events}) == len(events)      # asset ids never collide with others
    for r in inv.records():
        assert r["first_seen"] <= r["last_seen"]


def test_unanswered_flows_give_no_roles():
    cap = need_shared(PCAPS / "modbus" / "mod_scan.pcap")
    inv = AssetInventory()
    events = events_from_capture(cap, observers=[inv])
    flows = [e for e in events if e.kind == "flow"]
    answered = {f"{e.fields['proto']}/{e.dst.port}" for e in flows if e.fields["resp_pkts"]
                and e.fields["conn_state"] not in ("S0", "REJ", "RSTOS0", "SH", "RSTRH")}
    for r in inv.records():
        assert {k for k in r["roles"] if "/" in k} <= answered


# ---------------------------------------------------------------------------- hand-built events
def test_identity_of_src_and_every_value_kept():
    inv = AssetInventory()
    iam = ev(1, kind="bacnet", src=Endpoint("10.0.0.7", 47808, "00:00:00:00:00:07"),
             dst=Endpoint("10.0.0.255", 47808, "ff:ff:ff:ff:ff:ff"),
             fields={"service": "i_am", "identity": {"instance": 7, "vendor": "ACME"}, "identity_of": "src"})
    out = observe(inv, [iam, ev(2, fields={"identity": {"vendor": "Schneider"}}),
                        ev(3, fields={"identity": {"vendor": "Schneider"}}),         # known: silent
                        ev(4, fields={"identity": {"vendor": "Schneider ", "model": ""}})])
    recs = {r["ip"]: r for r in inv.records()}
    assert "10.0.0.255" not in recs                           # a broadcast is no device
    assert recs["10.0.0.7"]["identity"]["instance"] == [{"value": 7, "event": iam.id, "frames": [1, 2]}]
    assert recs["10.0.0.7"]["roles"] == {"bacnet": ["client"]}
    assert [v["value"] for v in recs["10.0.0.2"]["identity"]["vendor"]] == ["Schneider", "Schneider "]
    assert "model" not in recs["10.0.0.2"]["identity"]        # empty values reveal nothing
    assert recs["10.0.0.1"]["identity"] == {}
    ann = [e.fields["changes"] for e in assets_of(out) if e.src.ip == "10.0.0.2"]
    assert "identity:vendor=Schneider" in ann[0] and ann[1] == ["identity:vendor=Schneider "]


def test_roles_from_module_roles_and_flows():
    inv = AssetInventory()
    observe(inv, [
        ev(1, kind="dnp3", src=Endpoint("10.0.0.1", 40000), dst=Endpoint("10.0.0.3", 20000)),
        ev(2, kind="dnp3", src=Endpoint("10.0.0.3", 20000), dst=Endpoint("10.0.0.1", 40000),
           fields={"function": "UNSOLICITED_RESPONSE", "status": "one_way"}),   # from the server port
        ev(6, kind="modbus", src=Endpoint("10.0.0.4", 502), dst=Endpoint("10.0.0.1", 40001),
           fields={"func": "READ_COILS", "status": "no_request"}),              # a lone response
        ev(3, kind="flow", src=Endpoint("10.0.0.1", 40001), dst=Endpoint("10.0.0.3", 20000),
           fields={"proto": "tcp", "service": "dnp3", "conn_state": "SF", "resp_pkts": 3, "duration": 5.0}),
        ev(4, kind="flow", src=Endpoint("10.0.0.1", 40002), dst=Endpoint("10.0.0.3", 23),
           fields={"proto": "tcp", "service": None, "conn_state": "REJ", "resp_pkts": 1}),
        ev(5, kind="weird", src=Endpoint("10.0.0.1", 40003), dst=Endpoint("10.0.0.3", 20000),
           fields={"protocol": "dnp3", "name": "bad_crc"}),
    ])
    recs = {r["ip"]: r for r in inv.records()}
    assert recs["10.0.0.3"]["roles"] == {"dnp3": ["outstation"], "tcp/20000": ["server"]}
    assert recs["10.0.0.1"]["roles"] == {"dnp3": ["master"], "modbus": ["client"], "tcp/20000": ["client"]}
    assert recs["10.0.0.4"]["roles"] == {"modbus": ["server"]}
    assert recs["10.0.0.3"]["last_seen"] == "2020-09-13T12:26:48.000000Z"   # flow start 3 s + 5 s duration
    assert recs["10.0.0.3"]["protocols"] == ["dnp3"]


def test_mac_bindings_and_changes():
    inv = AssetInventory()
    plc = "10.0.0.2"
    out = observe(inv, [
        ev(1, dst=Endpoint(plc, 502, None)),                          # no MAC yet (raw IP capture)
        ev(2, dst=Endpoint(plc, 502, PLC_MAC)),                       # first MAC: "mac:"
        ev(3, dst=Endpoint(plc, 502, PLC_MAC)),                       # nothing new
        ev(4, dst=Endpoint(plc, 502, "00:0c:29:66:66:66")),           # another device took the IP
        ev(5, dst=Endpoint(plc, 502, PLC_MAC)),                       # flips back: known, folded
    ])
    changes = [e.fields["changes"] for e in assets_of(out) if e.src.ip == plc]
    assert changes[0][0] == "new"
    assert changes[1] == [f"mac:{PLC_MAC}"]
    assert changes[2] == [f"mac_changed:{PLC_MAC}->00:0c:29:66:66:66"]
    assert "last_seen" in changes[3] and "mac" in changes[3]           # the end-of-capture snapshot
    assert len(changes) == 4
    rec = {r["ip"]: r for r in inv.records()}[plc]
    assert rec["mac"] == PLC_MAC and rec["vendor"] == "Telemechanique Electrique"
    assert [(m["mac"], m["vendor"]) for m in rec["macs"]] == [(PLC_MAC, "Telemechanique Electrique"),
                                                              ("00:0c:29:66:66:66", "VMware, Inc.")]
    assert rec["macs"][0]["last_seen"] == "2020-09-13T12:26:45.000000Z"


def test_tenants_are_separate_devices():
    inv = AssetInventory()
    observe(inv, [ev(1), ev(2, tenant="plant-b")])
    assert sorted((r["tenant"], r["ip"]) for r in inv.records()) == [
        ("default", "10.0.0.1"), ("default", "10.0.0.2"), ("plant-b", "10.0.0.1"), ("plant-b", "10.0.0.2")]


def test_finish_emits_nothing_when_nothing_changed():
    inv = AssetInventory()
    out = observe(inv, [ev(1)])
    assert [e.fields["changes"][0] for e in assets_of(out)] == ["new", "new"]
    assert inv.finish() == []                                  # already announced as it is


# ---------------------------------------------------------------------------- with the store
def _ingest(data_dir: Path, cap: Path) -> tuple[list[Event], int]:
    st = open_store(Settings(data_dir=data_dir))
    try:
        inv = AssetInventory.from_store(st, "default")
        events = events_from_capture(cap, observers=[inv])
        return events, st.append(events)
    finally:
        st.close()


def test_seeded_inventory_does_not_announce_known_devices(data_dir: Path):
    cap43 = need_shared(PCAPS / "modbus" / "mod_43.pcap")
    cap_scan = need_shared(PCAPS / "modbus" / "mod_scan.pcap")
    first, new = _ingest(data_dir, cap43)
    assert new == len(first) and any("new" in e.fields["changes"] for e in assets_of(first))
    again, new = _ingest(data_dir, cap43)                      # the same capture again
    assert assets_of(again) == [] and new == 0
    other, new = _ingest(data_dir, cap_scan)                   # same devices, later traffic
    assert new == len(other)
    assert all("new" not in e.fields["changes"] for e in assets_of(other))
    assert all(not c.startswith("identity:") for e in assets_of(other) for c in e.fields["changes"])
    st = open_store(Settings(data_dir=data_dir), readonly=True)
    try:
        recs = {r["ip"]: r for r in st.assets()}
        assert set(recs) == {"84.240.225.194", "192.168.166.24"}
        scan_last = max(e.ts for e in other if e.kind != "asset")
        assert recs["84.240.225.194"]["last_seen"] >= Event(
            "x", scan_last, "x", "", "", Endpoint(), Endpoint(), "").to_dict()["ts"]
        assert recs["84.240.225.194"]["identity"]["vendor"][0]["value"] == "Schneider Electric"
        stored_assets = list(st.query(EventQuery(kinds=("asset",))))
        assert len(stored_assets) == len(assets_of(first)) + len(assets_of(other))
    finally:
        st.close()


def test_one_device_on_both_sides_is_announced_once():
    inv = AssetInventory()
    lo = Endpoint("127.0.0.1", 40000, "00:00:00:00:00:00")
    out = observe(inv, [ev(1, src=lo, dst=Endpoint("127.0.0.1", 502, "00:00:00:00:00:00"))])
    (ann,) = [e for e in assets_of(out) if "new" in e.fields["changes"]]
    assert ann.fields["changes"] == ["new", "role:modbus=client", "protocol:modbus", "role:modbus=server"]
    assert ann.fields["roles"] == {"modbus": ["client", "server"]}
    assert len({e.id for e in out}) == len(out)
    assert ann.fields["mac"] is None and ann.fields["macs"] == []     # the all-zero loopback MAC


class _Forgetful(dict):
    """An exchange cache that never remembers: every event takes the full learning path."""

    def __setitem__(self, key, value) -> None:
        pass


def test_fast_path_learns_exactly_what_the_full_path_learns():
    cap = need_shared(PCAPS / "modbus" / "ModbusTCP.pcap")
    fast, slow = AssetInventory(), AssetInventory()
    slow._seen = _Forgetful()
    a = events_from_capture(cap, observers=[fast])
    b = events_from_capture(cap, observers=[slow])
    assert len(fast._seen) > 0
    assert [e.to_json() for e in a] == [e.to_json() for e in b]
    assert fast.records() == slow.records()


def _all_captures() -> list[Path]:
    if not PCAPS.exists():
        return []
    return sorted(p for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))


@pytest.mark.parametrize("cap", _all_captures(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_inventory_invariants_on_every_shared_capture(cap: Path):
    inv = AssetInventory()
    events = events_from_capture(cap, observers=[inv])
    by_id = {e.id: e for e in events}
    assert len(by_id) == len(events)
    announced = assets_of(events)
    recs = {r["key"]: r for r in inv.records()}
    assert {e.fields["key"] for e in announced} == set(recs)           # every device was announced
    for e in announced:
        if e.src.ip is not None:
            assert is_unicast_ip(e.src.ip) and e.fields["key"] == e.src.ip
        else:                                       # a layer-2-only device (GOOSE, DCP): keyed by MAC
            assert e.src.mac and e.fields["key"] == f"mac:{e.src.mac}"
        assert e.dst == Endpoint() and e.action == "discover"
        assert e.fields["changes"]
    for r in recs.values():
        for key, vals in r["identity"].items():
            for v in vals:                                            # traced to the revealing event
                src = by_id[v["event"]]
                assert list(src.frames) == v["frames"]
                assert src.fields["identity"][key] == v["value"]
                side = src.fields.get("identity_of", "dst")
                ep = src.src if side == "src" else src.dst
                assert ep.ip == r["ip"] if r["ip"] else ep.mac in {m["mac"] for m in r["macs"]} | {r["mac"]}
    # never one per packet: each announcement teaches something not announced before, and each device
    # gets at most one end-of-capture snapshot (changes that are record keys, e.g. "last_seen")
    for ip in recs:
        mine = [e.fields["changes"] for e in announced if e.fields["key"] == ip]
        facts = [c for ch in mine for c in ch if ":" in c or c == "new"]
        assert len(facts) == len(set(facts)), (ip, mine)
        assert sum(1 for ch in mine if all(":" not in c and c != "new" for c in ch)) <= 1, (ip, mine)
