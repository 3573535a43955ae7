"""Passive sensors: capture sources, decode, TCP reassembly, flows, one module per protocol, assets.

Adding a protocol = one module implementing the interface in `sensors/base.py` + one line in
`PROTOCOLS` below + golden files for its captures. Order matters only for payload-shape probes on
unusual ports: the first module whose `probe()` accepts a flow's payload gets it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module path. The visible registry of every protocol the sensor parses.
_REGISTRY = {
    "modbus": "sensors.modbus",
    "s7comm": "sensors.s7comm",          # also S7comm-plus (kind s7comm_plus)
    "dnp3": "sensors.dnp3",
    "iec104": "sensors.iec104",
    "enip": "sensors.enip",              # EtherNet/IP + CIP (kinds enip, cip)
    "opcua": "sensors.opcua",
    "bacnet": "sensors.bacnet",
    "mqtt": "sensors.mqtt",
    "goose": "sensors.goose",
    "mms": "sensors.mms",
    "profinet_dcp": "sensors.profinet_dcp",
    "omron_fins": "sensors.omron_fins",
    "arp": "sensors.arp",
}

PROTOCOLS: dict[str, ModuleType] = {}
for _name, _path in _REGISTRY.items():
    try:
        PROTOCOLS[_name] = importlib.import_module(_path)
    except ModuleNotFoundError as _e:      # a module still being written: keep the others usable
        if _e.name != _path:
            raise


def points_of(event) -> list[dict]:
    """Point values of an event (base.py convention): `fields["points"]`, or the protocol module's
    `points(fields)` for protocols that derive them on demand (Modbus)."""
    pts = event.fields.get("points")
    if pts is not None:
        return pts
    mod = PROTOCOLS.get(event.kind)
    fn = getattr(mod, "points", None) if mod is not None else None
    return fn(event.fields) if fn is not None else []
