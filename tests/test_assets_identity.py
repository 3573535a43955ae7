"""The asset inventory shows identity from every protocol that reveals one (issue: protocol breadth).

Each case names a shared capture where a device tells who it is, the protocol that told it, and
identity keys the inventory must hold for some device, with the frames that revealed them.
"""

from __future__ import annotations

import pytest

from sensors.assets import AssetInventory
from sensors.run import events_from_capture
from tests.conftest import PCAPS, need_shared

CASES = [
    ("modbus/mod_43.pcap", "modbus", {"vendor"}),
    ("s7comm/snap7.pcap", "s7comm", {"order_number", "firmware", "model"}),
    ("enip/enip_test.pcap", "enip", {"vendor", "product"}),
    ("opcua/open62541_client-server_mainloop.pcap", "opcua", {"product_uri", "name"}),
    ("bacnet/bacnet_example.pcap", "bacnet", {"device_instance", "firmware"}),
    ("iec61850_goose/GOOSE.pcap", "goose", {"name", "gocb_ref"}),
    ("iec61850_mms/8d7c7db0-9804-012b-b2a6-0016cb8cea27.pcap", "mms", {"vendor", "model", "firmware"}),
    ("profinet_dcp/ChangeIPUsingDCP.pcap", "profinet_dcp", {"name", "ip"}),
    ("omron_fins/omron.pcap", "omron_fins", {"model", "firmware"}),
]


@pytest.mark.parametrize("cap,kind,keys", CASES, ids=[c[1] for c in CASES])
def test_identity_reaches_the_inventory(cap, kind, keys):
    inv = AssetInventory()
    events = events_from_capture(need_shared(PCAPS / cap), observers=[inv])
    by_id = {e.id: e for e in events}
    devices = [r for r in inv.records() if keys <= set(r["identity"])]
    assert devices, f"no device with identity {keys}: {[r['identity'].keys() for r in inv.records()]}"
    for dev in devices:
        for k in keys:
            for v in dev["identity"][k]:
                src = by_id[v["event"]]                  # provenance: the event that revealed it
                assert src.kind == kind and v["frames"] and set(v["frames"]) <= set(src.origin.frames)
    assets = [e for e in events if e.kind == "asset"]
    assert any(any(c.startswith("identity:") for c in e.fields["changes"]) for e in assets)


def test_layer2_devices_are_keyed_by_mac_and_stored(tmp_path):
    from icsight.settings import Settings
    from storage import open_store

    cap = need_shared(PCAPS / "profinet_dcp" / "ChangeIPUsingDCP.pcap")
    settings = Settings(data_dir=tmp_path)
    store = open_store(settings)
    inv = AssetInventory()
    store.append(events_from_capture(cap, observers=[inv]))
    recs = store.assets()
    l2 = [r for r in recs if r["ip"] is None]
    assert l2 and all(r["key"] == f"mac:{r['mac']}" for r in l2)
    assert any(r["identity"].get("name") for r in l2)
    # a second read into the same store, seeded from it, announces nothing new
    inv2 = AssetInventory.from_store(store, "default")
    again = [e for e in events_from_capture(cap, observers=[inv2]) if e.kind == "asset"]
    assert not [e for e in again if "new" in e.fields["changes"]]
    store.close()
