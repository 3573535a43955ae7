"""Replay a capture onto an interface at the recorded pace (or faster), for testing a live sensor.

Frames go out unchanged through an AF_PACKET raw socket bound to the interface (Linux, root or
CAP_NET_RAW): what the sensor on the other end of a veth pair, or on `lo`, receives is byte for byte
what the generator wrote. Timing follows the capture's timestamps divided by `speed`; `speed=0`
sends as fast as the socket takes them.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from sensors.capture import iter_frames


def replay(
    pcap: str | Path, iface: str, speed: float = 1.0, count: int = 0, max_gap: float | None = None
) -> int:
    """Send the frames of `pcap` on `iface`; returns how many were sent.

    :param speed: time multiplier (2.0 = twice as fast, 0 = no waiting).
    :param max_gap: cap on any single wait in seconds (skips long idle stretches).
    :raise OSError: the interface cannot be opened or a send fails.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        sock.bind((iface, 0))
        sent = 0
        first_ts = None
        start = time.perf_counter()
        offset = 0.0
        prev = None
        for _, ts, data, linktype in iter_frames(pcap):
            if linktype != 1:
                raise OSError(f"{pcap}: only Ethernet captures can be replayed (link type {linktype})")
            if speed > 0:
                if first_ts is None:
                    first_ts = ts
                if max_gap is not None and prev is not None and (ts - prev) / speed > max_gap:
                    offset += (ts - prev) / speed - max_gap
                prev = ts
                due = start + (ts - first_ts) / speed - offset
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            sock.send(data)
            sent += 1
            if count and sent >= count:
                break
        return sent
    finally:
        sock.close()
