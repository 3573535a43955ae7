"""`make bench`: the sensor vs tshark on crafted Modbus/TCP captures (same files, same run), and the
cost of detection.

Prints packets/s of each, their ratio, and the sensor's peak memory per capture size, so that
"memory flat as the capture grows" can be read off. Sizes: BENCH_SIZES (Modbus, default 1000000),
BENCH_MIXED_SIZES (DNP3 + IEC 104 + CIP, default 1000000; empty to skip). "parse+store" is the sensor
as `icsight sensor read` runs it without detection: parsers, asset inventory, SQLite store.

Detection: every capture is also read with all rules and all learned layers in protect mode (state
learned, outside the timing, from the first half of the capture's events, as `icsight detect learn`
would), and the share of the sensor's throughput lost to detection is printed beside the 30 % target.
That run is `icsight sensor read` as shipped: on 2+ CPUs detection runs in a worker process pipelined
with the parsers (sensors/offload.py). A second run keeps detection inline, in the sensor's process:
the share lost there is detection's whole CPU cost, also printed (with CPU seconds of both).
BENCH_DETECT=1 adds a run with the rules alone (no learned state); BENCH_FULL_DETECT=0 skips the
full-detection run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.craft import craft_modbus
from bench.craft_mixed import craft_mixed

WORK = Path(__file__).resolve().parent / "_work"
TSHARK_FIELDS = ["frame.number", "mbtcp.trans_id", "mbtcp.unit_id", "modbus.func_code",
                 "modbus.reference_num",
                 "modbus.word_cnt", "modbus.bit_cnt", "modbus.regval_uint16", "modbus.exception_code"]
# The same depth for the mixed capture: operation, object/point addresses and values per protocol.
TSHARK_MIXED = ["frame.number", "dnp3.al.func", "dnp3.al.obj", "dnp3.al.index", "dnp3.al.ana.int",
                "iec60870_asdu.typeid", "iec60870_asdu.causetx", "iec60870_asdu.ioa", "iec60870_asdu.float",
                "enip.command", "enip.session", "cip.sc", "cip.symbol", "cip.genstat"]
MIXED_FILTER = "dnp3 || iec60870_asdu || cip"
DETECTION_TARGET = 0.30  # at most this share of the sensor's throughput lost to detection (issue 5)


def _capture(n: int, kind: str = "modbus") -> Path:
    WORK.mkdir(exist_ok=True)
    p = WORK / f"{kind}_{n}.pcap"
    if not p.exists():
        t = time.perf_counter()
        what = craft_modbus(p, n) if kind == "modbus" else craft_mixed(p, n)
        print(f"crafted {p.name}: {what} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return p


def _sensor(cap: Path, mode: str, learned: Path | None = None) -> dict:
    """One timed run in a child process, in a fresh data directory (with a copy of `learned`'s state)."""
    with tempfile.TemporaryDirectory() as d:
        if learned is not None:
            shutil.copytree(learned / "detect", Path(d) / "detect")
        out = subprocess.run([sys.executable, "-m", "bench.run_sensor", str(cap), d, mode], check=True,
                             capture_output=True, text=True)
    return json.loads(out.stdout)


def _learn(cap: Path, into: Path) -> dict:
    """Learned state for `cap` (rules' tuning + learned layers, first half of its events) in `into`."""
    out = subprocess.run([sys.executable, "-m", "bench.run_sensor", str(cap), str(into), "learn"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def _tshark(cap: Path, fields: list[str] = TSHARK_FIELDS, display_filter: str = "modbus") -> dict:
    exe = shutil.which("tshark")
    if exe is None:
        return {}
    cmd = [exe, "-n", "-r", str(cap), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    t = time.perf_counter()
    lines = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as p:
        for _ in p.stdout:
            lines += 1
        # wait4 gives this child's own peak memory (RUSAGE_CHILDREN would be the max of all runs)
        _, _, usage = os.wait4(p.pid, 0)
        p.returncode = 0
    dt = time.perf_counter() - t
    return {"seconds": dt, "modbus_pdus": lines, "max_rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    sizes = [int(x) for x in os.environ.get("BENCH_SIZES", "1000000").split(",")]
    mixed = [int(x) for x in os.environ.get("BENCH_MIXED_SIZES", "1000000").split(",") if x]
    rows = []
    for kind, n in [("modbus", n) for n in sizes] + [("mixed", n) for n in mixed]:
        cap = _capture(n, kind)
        parse = _sensor(cap, "parse")
        store = _sensor(cap, "nodetect")            # the sensor: parse + asset inventory + store
        det = _sensor(cap, "store") if os.environ.get("BENCH_DETECT") else None   # + rules
        full = None
        if os.environ.get("BENCH_FULL_DETECT", "1") != "0":   # + rules + learned layers (protect)
            with tempfile.TemporaryDirectory() as d:
                learned = _learn(cap, Path(d))
                full = _sensor(cap, "detect", Path(d))
                inline = _sensor(cap, "detect-inline", Path(d))
        ts = _tshark(cap) if kind == "modbus" else _tshark(cap, TSHARK_MIXED, MIXED_FILTER)
        frames = store["frames"]
        row = {"capture": kind, "packets": frames, "sensor_parse_pps": frames / parse["seconds"],
               "sensor_store_pps": frames / store["seconds"], "sensor_max_rss_mb": store["max_rss_mb"],
               "sensor_events": store["events"]}
        if det is not None:
            row.update(sensor_rules_pps=frames / det["seconds"], rule_alerts=det["alerts"],
                       detection_cost=1 - store["seconds"] / det["seconds"])   # share of throughput lost
        if full is not None:
            row.update(sensor_detect_pps=frames / full["seconds"], detect_alerts=full["alerts"],
                       detect_max_rss_mb=full["max_rss_mb"], learned_events=learned["learned_events"],
                       full_detection_cost=1 - store["seconds"] / full["seconds"],
                       detect_worker=full["worker"], detect_worker_max_rss_mb=full["worker_max_rss_mb"],
                       sensor_cpu_s=store["cpu_seconds"], detect_cpu_s=full["cpu_seconds"],
                       sensor_inline_pps=frames / inline["seconds"], inline_alerts=inline["alerts"],
                       inline_detection_cost=1 - store["seconds"] / inline["seconds"],
                       inline_cpu_s=inline["cpu_seconds"])
        if ts:
            row.update(tshark_pps=frames / ts["seconds"], tshark_max_rss_mb=ts["max_rss_mb"],
                       tshark_modbus_pdus=ts["modbus_pdus"],
                       ratio_store=row["sensor_store_pps"] / (frames / ts["seconds"]),
                       ratio_parse=row["sensor_parse_pps"] / (frames / ts["seconds"]))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(f"{'capture':>8} {'packets':>9} {'sensor pkt/s (parse+store)':>27} {'parse only':>11} "
          f"{'tshark pkt/s':>13} "
          f"{'ratio':>6} {'sensor peak MB':>15} {'tshark peak MB':>15}")
    for r in rows:
        print(f"{r['capture']:>8} {r['packets']:>9} {r['sensor_store_pps']:>27,.0f} "
              f"{r['sensor_parse_pps']:>11,.0f} "
              f"{r.get('tshark_pps', float('nan')):>13,.0f} {r.get('ratio_store', float('nan')):>6.2f} "
              f"{r['sensor_max_rss_mb']:>15.0f} {r.get('tshark_max_rss_mb', float('nan')):>15.0f}")
    for r in rows:
        if "detection_cost" in r:
            print(f"{r['capture']}: with rules {r['sensor_rules_pps']:,.0f} pkt/s "
                  f"({r['detection_cost']:.0%} of throughput lost to detection, {r['rule_alerts']} alerts)")
    for r in rows:
        if "full_detection_cost" in r:
            cost = r["full_detection_cost"]
            print(f"{r['capture']}: sensor alone {r['sensor_store_pps']:,.0f} pkt/s, with all rules and "
                  f"learned layers (protect; learned on the first {r['learned_events']:,} events) "
                  f"{r['sensor_detect_pps']:,.0f} pkt/s: {cost:.0%} of throughput lost to detection "
                  f"(target <= {DETECTION_TARGET:.0%}: {'met' if cost <= DETECTION_TARGET else 'not met'}), "
                  f"{r['detect_alerts']} alerts, peak {r['detect_max_rss_mb']:.0f} MB"
                  + (f" + worker {r['detect_worker_max_rss_mb']:.0f} MB (shared pages in both)"
                     if r["detect_worker"] else " (inline: one CPU)"))
            print(f"{r['capture']}:   detection inline (one core) {r['sensor_inline_pps']:,.0f} pkt/s: "
                  f"{r['inline_detection_cost']:.0%} lost, {r['inline_alerts']} alerts; CPU seconds: sensor "
                  f"alone {r['sensor_cpu_s']:.1f}, with detection {r['detect_cpu_s']:.1f} "
                  f"(worker) / {r['inline_cpu_s']:.1f} (inline)")


if __name__ == "__main__":
    main()
