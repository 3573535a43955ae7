"""`make bench`: the sensor vs tshark on crafted Modbus/TCP captures (same files, same run).

Prints packets/s of each, their ratio, and the sensor's peak memory per capture size, so that
"memory flat as the capture grows" can be read off. Sizes: BENCH_SIZES (default 1000000).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.craft import craft_modbus

WORK = Path(__file__).resolve().parent / "_work"
TSHARK_FIELDS = ["frame.number", "mbtcp.trans_id", "mbtcp.unit_id", "modbus.func_code", "modbus.reference_num",
                 "modbus.word_cnt", "modbus.bit_cnt", "modbus.regval_uint16", "modbus.exception_code"]


def _capture(n: int) -> Path:
    WORK.mkdir(exist_ok=True)
    p = WORK / f"modbus_{n}.pcap"
    if not p.exists():
        t = time.perf_counter()
        trans = craft_modbus(p, n)
        print(f"crafted {p.name}: {trans} transactions in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return p


def _sensor(cap: Path, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-m", "bench.run_sensor", str(cap), d, mode], check=True,
                             capture_output=True, text=True)
    return json.loads(out.stdout)


def _tshark(cap: Path) -> dict:
    exe = shutil.which("tshark")
    if exe is None:
        return {}
    cmd = [exe, "-n", "-r", str(cap), "-Y", "modbus", "-T", "fields"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    lines = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as p:
        for _ in p.stdout:
            lines += 1
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": dt, "modbus_pdus": lines, "max_rss_mb": max(rss, before) / 1024}


def main() -> None:
    sizes = [int(x) for x in os.environ.get("BENCH_SIZES", "1000000").split(",")]
    rows = []
    for n in sizes:
        cap = _capture(n)
        parse = _sensor(cap, "parse")
        store = _sensor(cap, "store")
        ts = _tshark(cap)
        frames = store["frames"]
        row = {"packets": frames, "sensor_parse_pps": frames / parse["seconds"],
               "sensor_store_pps": frames / store["seconds"], "sensor_max_rss_mb": store["max_rss_mb"],
               "sensor_transactions": store["modbus"]}
        if ts:
            row.update(tshark_pps=frames / ts["seconds"], tshark_max_rss_mb=ts["max_rss_mb"],
                       tshark_modbus_pdus=ts["modbus_pdus"],
                       ratio_store=row["sensor_store_pps"] / (frames / ts["seconds"]),
                       ratio_parse=row["sensor_parse_pps"] / (frames / ts["seconds"]))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(f"{'packets':>9} {'sensor pkt/s (parse+store)':>27} {'parse only':>11} {'tshark pkt/s':>13} "
          f"{'ratio':>6} {'sensor peak MB':>15} {'tshark peak MB':>15}")
    for r in rows:
        print(f"{r['packets']:>9} {r['sensor_store_pps']:>27,.0f} {r['sensor_parse_pps']:>11,.0f} "
              f"{r.get('tshark_pps', float('nan')):>13,.0f} {r.get('ratio_store', float('nan')):>6.2f} "
              f"{r['sensor_max_rss_mb']:>15.0f} {r.get('tshark_max_rss_mb', float('nan')):>15.0f}")


if __name__ == "__main__":
    main()
