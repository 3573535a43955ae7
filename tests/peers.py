"""Independent oracles for the parsers: tshark's dissectors and the expected Zeek logs in ../shared."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def tshark_fields(pcap: Path, fields: list[str], display_filter: str = "",
                  extra: tuple[str, ...] = ()) -> list[dict[str, list[str]]]:
    """One dict per frame matching `display_filter`: field -> every occurrence (tshark -T fields).

    `frame.number` is always included. Occurrences are split on tshark's aggregator (U+001F).
    """
    from tests.conftest import need_tshark

    exe = need_tshark()
    cols = ["frame.number", *fields]
    cmd = [exe, "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
           "-E", "aggregator=\x1f", "-E", "quote=n", *extra]
    for f in cols:
        cmd += ["-e", f]
    if display_filter:
        cmd += ["-Y", display_filter]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split("\t")
        parts += [""] * (len(cols) - len(parts))
        rows.append({c: (p.split("\x1f") if p else []) for c, p in zip(cols, parts, strict=True)})
    return rows


def tshark_json(pcap: Path, display_filter: str = "",
                protocols: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """tshark -T json output (list of frames); `protocols` limits the layers (-J)."""
    from tests.conftest import need_tshark

    exe = need_tshark()
    cmd = [exe, "-n", "-r", str(pcap), "-T", "json"]
    if protocols:
        cmd += ["-J", " ".join(protocols)]
    if display_filter:
        cmd += ["-Y", display_filter]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


def read_zeek_log(path: Path) -> list[dict[str, str]]:
    """Rows of a Zeek ASCII log as dicts (values as the strings Zeek printed; '-' unset)."""
    fields: list[str] = []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line.startswith("#") or not line.strip():
            continue
        else:
            rows.append(dict(zip(fields, line.split("\t"), strict=False)))
    return rows
