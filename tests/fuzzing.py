"""Feed bytes straight into one protocol analyzer (fuzzing and byte-literal tests)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from icsight.events import Endpoint, Event
from icsight.settings import Settings
from sensors.flows import Conn
from sensors.pipeline import Sensor


def feed(module: ModuleType, chunks: list[tuple[bool, bytes]], transport: str = "tcp",
         port: int | None = None) -> list[Event]:
    """Run `module`'s Tcp/UdpAnalyzer over (is_orig, bytes) chunks; returns the events it emitted.

    Each chunk is one TCP delivery (or one UDP datagram) at ts=i, frame i+1.
    """
    s = Sensor(Settings(data_dir=Path(".")), protocols={module.PROTOCOL: module})
    s.begin("fuzz")
    ports = getattr(module, "TCP_PORTS" if transport == "tcp" else "UDP_PORTS", ()) or (0,)
    conn = Conn(s, transport, Endpoint("10.0.0.1", 40000, "02:00:00:00:00:01"),
                Endpoint("10.0.0.2", port or ports[0], "02:00:00:00:00:02"), 0.0, "Cfuzz")
    cls = module.TcpAnalyzer if transport == "tcp" else module.UdpAnalyzer
    an = cls(conn)
    conn.analyzer, conn.protocol = an, module.PROTOCOL
    for i, (is_orig, data) in enumerate(chunks):
        an.data(is_orig, data, float(i), i + 1)
    an.close(float(len(chunks)))
    return s.drain()


def feed_l2(module: ModuleType, frames: list[bytes], ethertype: int | None = None) -> list[Event]:
    """Run `module`'s L2Analyzer over frame payloads (after the EtherType)."""
    s = Sensor(Settings(data_dir=Path(".")), protocols={module.PROTOCOL: module})
    s.begin("fuzz")
    an = module.L2Analyzer(s)
    et = ethertype if ethertype is not None else module.ETHERTYPES[0]
    for i, data in enumerate(frames):
        an.frame(float(i), i + 1, "02:00:00:00:00:01", "01:0c:cd:01:00:01", et, data, None)
    an.close(float(len(frames)))
    return s.drain()
