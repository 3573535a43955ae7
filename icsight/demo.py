"""`icsight demo`: a fresh data directory, a generated plant capture, the sensor over it, a summary.

The capture comes from the cyber range (`cyberrange`): the water-treatment attack day when the
scenario library is present, else a small built-in plant scene crafted with `cyberrange.pcapgen`.
Everything runs offline on the embedded store; the summary goes to stdout and says where the data is.
"""

from __future__ import annotations

import shutil
import struct
import sys
from collections import Counter
from pathlib import Path

import click

from icsight.settings import Settings


def _builtin_scene(path: Path) -> dict:
    """A small Modbus plant: an HMI polls a PLC for tank level and pump state; a rogue host writes."""
    from cyberrange.pcapgen import Host, PcapStream, TcpSession, arp

    hmi = Host("192.168.10.20", "00:0c:29:3e:51:a2")
    plc = Host("192.168.10.10", "00:80:f4:12:34:56")       # Schneider Electric OUI
    rogue = Host("192.168.10.66", "00:10:18:cb:8c:13")
    t = 1_700_000_000.0

    def mb(tid: int, pdu: bytes, unit: int = 1) -> bytes:
        return struct.pack("!HHHB", tid, 0, len(pdu) + 1, unit) + pdu

    with PcapStream(path) as out:
        arp(out, t, hmi, plc.ip)
        arp(out, t + 0.0001, plc, hmi.ip, reply_to=hmi)
        s = TcpSession(out, hmi, plc, 49152, 502)
        t = s.open(t + 0.01)
        # device identification once (FC43/14): vendor, product code, revision
        objs = [(0, b"Schneider Electric"), (1, b"BMX P34 2020"), (2, b"v3.10")]
        body = b"".join(bytes([i, len(v)]) + v for i, v in objs)
        s.exchange(t, mb(1, b"\x2b\x0e\x01\x00"), mb(1, b"\x2b\x0e\x01\x01\x00\x00" + bytes([len(objs)]) + body))
        level = 500
        for i in range(600):                                  # 10 minutes of 1 s polling
            t += 1.0
            level += (7 if (i // 60) % 2 == 0 else -6)
            pump = 1 if (i // 60) % 2 == 0 else 0
            regs = [level, 120 + i % 5, pump, 0]
            tid = (i + 2) & 0xFFFF
            s.exchange(t, mb(tid, struct.pack("!BHH", 3, 0, 4)),
                       mb(tid, struct.pack("!BB", 3, 8) + struct.pack("!4H", *regs)), latency=0.003)
            if i == 420:                                      # a rogue host writes the pump setpoint
                r = TcpSession(out, rogue, plc, 40001, 502)
                t2 = r.open(t + 0.3)
                r.exchange(t2 + 0.01, mb(7, struct.pack("!BHH", 6, 2, 1)), mb(7, struct.pack("!BHH", 6, 2, 1)))
                r.close(t2 + 0.05)
        s.close(t + 0.5)
        return {"frames": out.frames, "scenario": "built-in Modbus water-tank scene"}


def run_demo(data_dir: Path) -> int:
    """Generate, sense, store and summarise; returns an exit code."""
    from sensors.pipeline import Sensor
    from sensors.run import read_captures
    from storage import open_store

    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    cap = data_dir / "demo.pcap"
    info = _builtin_scene(cap)
    settings = Settings(data_dir=data_dir, sensor="demo-sensor", tenant="demo")
    store = open_store(settings)
    observers = []
    try:
        from sensors.assets import AssetInventory

        inv = AssetInventory.from_store(store, settings.tenant)
        observers.append(inv)
    except ImportError:
        inv = None
    sensor = Sensor(settings, observers=observers)
    if inv is not None and hasattr(inv, "bind"):
        inv.bind(sensor)
    n = read_captures(sensor, [cap], [store.append])
    from storage import EventQuery

    events = list(store.query(EventQuery(tenant=settings.tenant, limit=None)))
    store_assets = store.assets(settings.tenant) if hasattr(store, "assets") else []
    store.close()

    echo = click.echo
    echo(f"icsight demo — {info['scenario']}: {info['frames']} frames -> {n} events")
    echo("")
    echo("资产 Assets")
    for a in store_assets:
        ident = a.get("identity") or {}
        idtxt = ", ".join(f"{k}={v['value'] if isinstance(v, dict) else v}" for k, v in sorted(ident.items()))
        roles = a.get("roles") or {}
        rtxt = " ".join(f"{p}:{'/'.join(r)}" for p, r in sorted(roles.items()))
        echo(f"  {a.get('ip', '?'):<16} {a.get('mac') or '-':<18} {a.get('vendor') or '-':<22} {rtxt:<30} {idtxt}")
    echo("")
    kinds = Counter(e.kind for e in events)
    echo("协议 Protocols / event kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    funcs = Counter((e.kind, e.fields.get("func") or e.fields.get("function") or e.action, e.src.ip)
                    for e in events if e.kind not in ("flow", "asset", "weird"))
    echo("")
    echo("事务 Transactions (protocol, operation, from)")
    for (k, f, src), c in funcs.most_common(12):
        echo(f"  {c:>6}  {k:<8} {f:<28} {src}")
    writes = [e for e in events if e.action == "write"]
    if writes:
        echo("")
        echo("写操作 Writes")
        for e in writes[:10]:
            echo(f"  {e.to_dict()['ts']}  {e.src.ip} -> {e.dst.ip}  {e.kind} {e.fields.get('func')} "
                 f"addr={e.fields.get('address')} values={e.fields.get('values')}  frames={list(e.origin.frames)}")
    echo("")
    echo(f"数据 Data: {data_dir}  (capture {cap.name}, store {settings.db_path.name})")
    echo(f"Look further:  icsight events --data-dir {data_dir} --kind modbus | head")
    echo(f"               icsight assets --data-dir {data_dir}")
    echo(f"               tshark -r {cap} -Y modbus | head")
    return 0


@click.command("demo")
@click.option("--data-dir", type=click.Path(file_okay=False), default="demo-data", show_default=True,
              help="Fresh data directory for the demo (deleted and recreated).")
def demo(data_dir: str) -> None:
    """Generate a plant capture, run the sensor into a fresh store, print a summary."""
    sys.exit(run_demo(Path(data_dir)))
