"""Sensor core: link types, IP fragments, TCP reassembly (property-based), flows, capture errors."""

from __future__ import annotations

import gzip
import itertools
import random
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.utils import PcapWriter, wrpcap

from icsight.errors import CaptureError
from icsight.events import Endpoint, Event, Origin
from icsight.settings import Settings
from sensors import base
from sensors.capture import read_capture
from sensors.pipeline import Sensor
from sensors.run import events_from_capture, read_captures

# ---------------------------------------------------------------- a collecting test protocol


class _Collect(base.Analyzer):
    """Records what the sensor delivers, per direction, and the gaps it declares."""

    __slots__ = ("chunks", "gap_ts", "gaps")
    PROTOCOL = "collect"

    def __init__(self, conn):
        super().__init__(conn)
        self.chunks = {True: [], False: []}
        self.gaps = {True: 0, False: 0}
        self.gap_ts: list[float] = []
        _Collect.last = self

    def data(self, is_orig, data, ts, frames):
        self.chunks[is_orig].append((bytes(data), base.as_frames(frames)))

    def gap(self, is_orig, size, ts):
        self.gaps[is_orig] += size
        self.gap_ts.append(ts)

    def stream(self, is_orig=True) -> bytes:
        return b"".join(c for c, _ in self.chunks[is_orig])


COLLECT = types.ModuleType("collect")
COLLECT.PROTOCOL = "collect"
COLLECT.TCP_PORTS = (9999,)
COLLECT.UDP_PORTS = (9999,)
COLLECT.TcpAnalyzer = _Collect
COLLECT.UdpAnalyzer = _Collect


def _sensor() -> Sensor:
    s = Sensor(Settings(data_dir=Path(".")), protocols={"collect": COLLECT})
    s.begin("test")
    return s


C, S = "10.0.0.1", "10.0.0.2"


def _seg(seq: int, payload: bytes = b"", flags: str = "PA", src=C, dst=S, sport=40000, dport=9999, ack=1):
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst)
                 / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags) / payload)


def _handshake(isn=1000):
    return [_seg(isn, flags="S", ack=0),
            _seg(5000, flags="SA", src=S, dst=C, sport=9999, dport=40000, ack=(isn + 1) & 0xFFFFFFFF),
            _seg((isn + 1) & 0xFFFFFFFF, flags="A", ack=5001)]


def _run(frames: list[bytes], linktype: int = 1) -> tuple[Sensor, list[Event]]:
    s = _sensor()
    for i, f in enumerate(frames):
        s.packet(i + 1, 1000.0 + i * 0.001, f, linktype)
    s.end()
    return s, s.drain()


# ---------------------------------------------------------------- TCP reassembly properties


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=1, max_size=3000), cuts=st.lists(st.integers(1, 2999), max_size=30),
       seed=st.integers(0, 2**32 - 1), dup=st.floats(0, 0.5), overlap=st.booleans(),
       isn=st.integers(0, 2**32 - 1))
def test_reassembly_recovers_stream(data, cuts, seed, dup, overlap, isn):
    """Shuffled, duplicated and overlapping segments (sequence wrap included) give back the stream."""
    rng = random.Random(seed)
    points = sorted({c for c in cuts if c < len(data)} | {0, len(data)})
    segs = [(a, data[a:b]) for a, b in itertools.pairwise(points)]
    if overlap:  # re-send spans that straddle segment boundaries
        segs += [(a, data[a:a + rng.randint(1, 200)]) for a, _ in segs[: len(segs) // 2]]
    segs += [s for s in segs if rng.random() < dup]
    first, rest = segs[0], segs[1:]
    rng.shuffle(rest)
    order = [first, *rest] if rng.random() < 0.5 else [*rest, first]
    frames = _handshake(isn)
    frames += [_seg((isn + 1 + off) & 0xFFFFFFFF, chunk, ack=5001) for off, chunk in order]
    _run(frames)
    an = _Collect.last
    assert an.stream() == data
    assert an.gaps[True] == 0


def test_gap_is_declared_when_peer_acks_past_a_hole():
    isn = 100
    frames = _handshake(isn)
    frames.append(_seg(isn + 1, b"A" * 10))
    # bytes 11..20 are lost; 21..30 arrive, then the server acknowledges everything
    frames.append(_seg(isn + 21, b"C" * 10))
    frames.append(_seg(5001, b"", flags="A", src=S, dst=C, sport=9999, dport=40000, ack=isn + 31))
    frames.append(_seg(isn + 31, b"D" * 5))
    _s, events = _run(frames)
    an = _Collect.last
    assert an.stream() == b"A" * 10 + b"C" * 10 + b"D" * 5
    assert an.gaps[True] == 10
    assert an.gap_ts == [1000.0 + 5 * 0.001]         # declared when the ACK (frame 6) arrived, not at close
    flow = next(e for e in events if e.kind == "flow")
    assert flow.fields["missed_bytes"] == 10
    assert "G" in flow.fields["history"]


def test_midstream_start_and_frames_of_each_chunk():
    frames = [_seg(777, b"hello"), _seg(782, b"world"),
              _seg(1, b"ok", src=S, dst=C, sport=9999, dport=40000, ack=787)]
    _, events = _run(frames)
    an = _Collect.last
    assert an.stream(True) == b"helloworld" and an.stream(False) == b"ok"
    assert [f for _, f in an.chunks[True]] == [[1], [2]]
    flow = next(e for e in events if e.kind == "flow")
    assert flow.fields["conn_state"] == "OTH"
    assert flow.src.ip == C and flow.dst.port == 9999      # originator = side not on the service port


def test_held_out_of_order_bytes_are_bounded():
    isn = 0
    frames = _handshake(isn)
    # a hole at the start that never fills, followed by 300 KiB held out of order
    chunk = b"x" * 1000
    frames += [_seg(isn + 1 + 5000 + i * 1000, chunk) for i in range(300)]
    _s, _events = _run(frames)
    an = _Collect.last
    assert an.gaps[True] >= 5000                 # the hole was given up on, not held forever
    assert an.stream() == chunk * 300


def test_flow_record_states():
    isn = 10
    frames = [*_handshake(isn), _seg(isn + 1, b"req"),
              _seg(5001, flags="A", src=S, dst=C, sport=9999, dport=40000, ack=isn + 4),
              _seg(5001, b"resp", src=S, dst=C, sport=9999, dport=40000, ack=isn + 4),
              _seg(isn + 4, flags="FA", ack=5005),
              _seg(5005, flags="FA", src=S, dst=C, sport=9999, dport=40000, ack=isn + 5),
              _seg(isn + 5, flags="A", ack=5006)]
    _, events = _run(frames)
    (flow,) = [e for e in events if e.kind == "flow"]
    f = flow.fields
    assert (f["conn_state"], f["history"]) == ("SF", "ShADadFf")
    assert (f["orig_bytes"], f["resp_bytes"], f["orig_pkts"], f["resp_pkts"]) == (3, 4, 5, 4)
    assert list(flow.origin.frames) == list(range(1, 10))
    rej = [_seg(1, flags="S", ack=0), _seg(0, flags="RA", src=S, dst=C, sport=9999, dport=40000, ack=2)]
    _, events = _run(rej)
    assert next(e for e in events if e.kind == "flow").fields["conn_state"] == "REJ"


# ---------------------------------------------------------------- link types and IP


def _l3():
    return IP(src=C, dst=S) / UDP(sport=40000, dport=9999) / b"payload!"


@pytest.mark.parametrize("linktype,frame", [
    (1, lambda: Ether() / _l3()),
    (1, lambda: Ether() / Dot1Q(vlan=10) / _l3()),
    (1, lambda: Ether() / Dot1AD(vlan=20) / Dot1Q(vlan=10) / _l3()),
    (113, lambda: CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\x00\x00\x00\x00\x01\x00\x00")
     / _l3()),
    (276, lambda: CookedLinuxV2(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\x00\x00\x00\x00\x01\x00\x00",
                                proto=0x0800) / _l3()),
    (101, lambda: _l3()),
    (228, lambda: _l3()),
], ids=["ethernet", "802.1q", "qinq", "sll", "sll2", "raw", "ipv4"])
def test_link_types(linktype, frame):
    _, events = _run([bytes(frame())], linktype)
    assert _Collect.last.stream() == b"payload!"
    flow = next(e for e in events if e.kind == "flow")
    assert (flow.src.ip, flow.src.port, flow.dst.ip, flow.dst.port) == (C, 40000, S, 9999)
    assert flow.fields["proto"] == "udp"


def test_ipv4_fragments_reassembled_with_all_frames():
    payload = bytes(range(256)) * 12
    frags = fragment(IP(src=C, dst=S) / UDP(sport=40000, dport=9999) / payload, fragsize=800)
    assert len(frags) >= 4
    order = [frags[-1], *frags[:-1]]       # last fragment first: order must not matter
    _, _events = _run([bytes(Ether() / f) for f in order])
    ((data, frames),) = _Collect.last.chunks[True]
    assert data == payload
    assert frames == list(range(1, len(frags) + 1))


def test_ipv6_fragments_reassembled():
    payload = b"v6" * 1000
    pkt = IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrFragment() / UDP(sport=40000, dport=9999) / payload
    frags = fragment6(pkt, 600)
    _, events = _run([bytes(Ether() / f) for f in frags])
    assert _Collect.last.stream() == payload
    flow = next(e for e in events if e.kind == "flow")
    assert flow.src.ip == "fd00::1"


def test_incomplete_fragments_become_weird():
    frags = fragment(IP(src=C, dst=S) / UDP(sport=40000, dport=9999) / (b"z" * 3000), fragsize=800)
    s, events = _run([bytes(Ether() / f) for f in frags[:-1]])
    assert [e.fields["name"] for e in events if e.kind == "weird"] == ["fragment_timeout"]
    assert s.weird_counts[("ip", "fragment_timeout")] == 1


@settings(max_examples=300, deadline=None)
@given(frame=st.binary(max_size=200), linktype=st.sampled_from([0, 1, 101, 113, 228, 229, 276]))
def test_random_frames_never_crash(frame, linktype):
    s = _sensor()
    s.packet(1, 1.0, frame, linktype)
    s.end()


@settings(max_examples=200, deadline=None)
@given(pos=st.integers(0, 200), val=st.integers(0, 255), cut=st.integers(0, 120))
def test_mutated_frames_never_crash(pos, val, cut):
    good = bytearray(_seg(1, b"0123456789" * 5))
    if pos < len(good):
        good[pos] = val
    s = _sensor()
    s.packet(1, 1.0, bytes(good[: len(good) - cut]), 1)
    s.end()


# ---------------------------------------------------------------- capture files


def _write_pcap(path: Path, n: int = 5, **kw) -> None:
    wrpcap(str(path), [Ether() / IP(src=C, dst=S) / UDP(sport=40000, dport=9999) / f"m{i}".encode()
                       for i in range(n)], **kw)


def test_pcap_pcapng_gzip_read_alike(tmp_path):
    p = tmp_path / "a.pcap"
    _write_pcap(p)
    ng = tmp_path / "a.pcapng"
    with PcapWriter(str(ng), linktype=1) as w:
        pass
    from scapy.utils import PcapNgWriter
    with PcapNgWriter(str(ng)) as w:
        for fr in read_capture(p):
            w.write(Ether(fr.data))
    gz = tmp_path / "a.pcap.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    got = [[(f.number, f.data) for f in read_capture(x)] for x in (p, ng, gz)]
    assert got[0] == got[1] == got[2]
    assert [n for n, _ in got[0]] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "gzip"])
def test_truncated_capture_names_file_and_frame_and_keeps_events(tmp_path, kind):
    p = tmp_path / "t.pcap"
    _write_pcap(p, n=6)
    raw = p.read_bytes()
    if kind == "pcapng":
        from scapy.utils import PcapNgWriter
        ng = tmp_path / "t.pcapng"
        with PcapNgWriter(str(ng)) as w:
            for fr in read_capture(p):
                w.write(Ether(fr.data))
        raw, p = ng.read_bytes(), ng
    cut = raw[: len(raw) - 20]
    if kind == "gzip":
        cut = gzip.compress(raw)[:-30]
        p = tmp_path / "t.pcap.gz"
    p.write_bytes(cut)
    s = _sensor()
    out: list[Event] = []
    with pytest.raises(CaptureError) as ei:
        read_captures(s, [p], [out.extend])
    assert str(p) in str(ei.value)
    assert ei.value.frame is not None and ei.value.frame >= (2 if kind == "gzip" else 5)
    kept = _Collect.last.chunks[True]
    assert len(kept) == ei.value.frame - 1           # every complete frame before the break was parsed
    assert any(e.kind == "flow" for e in out)          # and flushed to the sinks


def test_not_a_capture(tmp_path):
    p = tmp_path / "x.pcap"
    p.write_bytes(b"this is not a capture file at all")
    with pytest.raises(CaptureError, match="not a pcap"):
        list(read_capture(p))
    with pytest.raises(CaptureError, match="no such file"):
        list(read_capture(tmp_path / "missing.pcap"))


# ---------------------------------------------------------------- event model


def test_event_json_round_trip_and_deterministic_ids(tmp_path):
    e = Event("abc", 1595660608.237857, "modbus", "t1", "s1", Endpoint("1.2.3.4", 502, "00:11:22:33:44:55"),
              Endpoint("5.6.7.8", 40000), "read", {"b": 1, "a": [1, 2], "中文": "值"},
              Origin("x.pcap", (1, 2)))
    j = e.to_json()
    assert Event.from_json(j) == e
    assert j.index('"action"') < j.index('"dst"') < j.index('"fields"')      # sorted keys
    assert '"ts":"2020-07-25T07:03:28.237857Z"' in j
    p = tmp_path / "c.pcap"
    _write_pcap(p)
    ids1 = [x.id for x in events_from_capture(p)]
    ids2 = [x.id for x in events_from_capture(p)]
    assert ids1 == ids2 and len(set(ids1)) == len(ids1)


def test_fast_reader_agrees_with_scapy_on_every_shared_capture():
    from sensors.capture import iter_frames
    from tests.conftest import PCAPS, need_shared

    caps = [p for p in sorted(need_shared(PCAPS).rglob("*")) if p.suffix in (".pcap", ".pcapng", ".cap")]
    assert len(caps) > 50
    for p in caps:
        fast = [(n, round(t, 6), bytes(d), lt) for n, t, d, lt in iter_frames(p)]
        ref = [(f.number, round(f.ts, 6), f.data, f.linktype) for f in read_capture(p)]
        assert fast == ref, p


def test_fast_reader_truncation(tmp_path):
    from sensors.capture import iter_frames

    p = tmp_path / "t.pcap"
    _write_pcap(p, n=4)
    p.write_bytes(p.read_bytes()[:-5])
    got = []
    with pytest.raises(CaptureError, match=r"t.pcap at frame 4: record truncated"):
        for fr in iter_frames(p):
            got.append(fr[0])
    assert got == [1, 2, 3]
