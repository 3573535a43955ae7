"""Scenario files: YAML validated with pydantic (extra keys forbidden); errors name the file and line.

A scenario describes a site (zones at Purdue levels), its assets with their identities, the process
the PLCs control, who polls whom, how long the day lasts and which attacks happen when. A file may
`extends:` another in the same folder: it inherits everything, may override the scalar keys and adds
`assets` and `attacks` (the attack day = the baseline day + an attacker + attacks). The format is in
docs/cyberrange.md.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario file that cannot be loaded; the message starts with file:line."""


# ------------------------------------------------------------------------------ durations ("90s", "4h")
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(v: Any) -> float:
    """Seconds from a number or "250ms", "30s", "10m", "4h", "1d"."""
    if isinstance(v, bool):
        raise ValueError("a duration, not a boolean")
    if isinstance(v, int | float):
        return float(v)
    m = _DUR.match(str(v))
    if not m:
        raise ValueError(f"not a duration: {v!r} (use e.g. 500ms, 30s, 10m, 4h)")
    return float(m.group(1)) * _UNIT[m.group(2)]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _dur_fields(*names: str):
    return field_validator(*names, mode="before")(lambda cls, v: None if v is None else parse_duration(v))


# ----------------------------------------------------------------------------------------- the model
ROLES = (
    "hmi",
    "engineering_workstation",
    "historian",
    "scada_server",
    "plc",
    "rtu",
    "ied",
    "switch",
    "gateway",
    "firewall",
    "attacker",
    "workstation",
)
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class Site(_M):
    name: str
    location: str = ""
    industry: str = ""


class Zone(_M):
    name: str
    level: float = Field(ge=0, le=5, description="Purdue level (0 process .. 5 enterprise; 3.5 = DMZ)")
    subnet: str

    @field_validator("subnet")
    @classmethod
    def _net(cls, v: str) -> str:
        ipaddress.ip_network(v, strict=False)
        return v


class Identity(_M):
    vendor: str
    model: str = ""
    firmware: str = ""
    order_number: str = ""
    serial: str = ""


class Asset(_M):
    name: str
    role: Literal[ROLES]  # type: ignore[valid-type]
    zone: str
    ip: str
    mac: str
    identity: Identity
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit id")
    dnp3_address: int | None = Field(None, ge=0, le=65519)
    common_address: int | None = Field(None, ge=1, le=65534, description="IEC 104 CA")
    rack: int = 0
    slot: int = 2
    open_ports: list[int] = Field(default_factory=list, description="extra listening TCP ports (scans)")
    appears: float | None = Field(None, description="time the asset first talks (rogue devices)")
    v_appears = _dur_fields("appears")

    @field_validator("ip")
    @classmethod
    def _ip(cls, v: str) -> str:
        ipaddress.IPv4Address(v)
        return v

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str) -> str:
        v = v.lower().replace("-", ":")
        if not _MAC.match(v):
            raise ValueError(f"not a MAC address: {v!r}")
        if int(v[:2], 16) & 1:
            raise ValueError("a unicast MAC is needed (first octet even)")
        return v


class Point(_M):
    """Where a process tag is exposed: a Modbus register/coil, an S7 DB offset, a DNP3 index, an IOA."""

    tag: str
    asset: str
    table: Literal["holding", "input", "coil", "discrete", "db", "ai", "bi", "bo", "ioa"]
    address: int = Field(ge=0, description="register/coil number, DB byte offset, DNP3 index or IOA")
    db: int = 0
    type: Literal["uint16", "int16", "int32", "real", "bool", "float", "single"] = "uint16"
    scale: float = 1.0
    writable: bool = False


class Process(_M):
    model: Literal["water_tank", "body_shop", "substation"]
    params: dict[str, float] = Field(default_factory=dict)


class ReadSpec(_M):
    """One request of a poll cycle."""

    fc: int | None = Field(None, description="Modbus function code 1-4")
    address: int = 0
    count: int = Field(1, ge=1, le=125)
    db: int = 0
    area: Literal["DB", "I", "Q", "M"] = "DB"
    length: int = Field(0, ge=0, le=200, description="S7 bytes to read")


class WriteSpec(_M):
    """An operator action repeated every `every`, cycling through `values` (a captured write for replays)."""

    every: float
    table: Literal["holding", "coil", "db", "ioa", "crob"]
    address: int
    values: list[float]
    db: int = 0
    v_e = _dur_fields("every")


class Poll(_M):
    client: str
    server: str
    protocol: Literal["modbus", "s7comm", "dnp3", "iec104"]
    period: float = 1.0
    jitter: float = 0.0
    start: float = 0.0
    reads: list[ReadSpec] = Field(default_factory=list)
    identify: bool = Field(False, description="read the device identity once at connect (FC43/14, SZL)")
    integrity: float | None = Field(None, description="DNP3 class 0 poll / IEC 104 interrogation period")
    testfr: float = Field(20.0, description="IEC 104 TESTFR period when idle (t3)")
    writes: list[WriteSpec] = Field(default_factory=list)
    v_d = _dur_fields("period", "jitter", "start", "integrity", "testfr")


class Attack(_M):
    name: str
    type: str
    start: float
    attacker: str | None = Field(None, description="asset that attacks (a rogue host or a compromised one)")
    target: str | None = None
    targets: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    v_s = _dur_fields("start")


class Scenario(_M):
    name: str
    description: str
    site: Site
    start: str = Field("2026-03-02T08:00:00Z", description="plant clock at t=0 (ISO 8601, UTC)")
    duration: float
    seed: int = 1
    zones: list[Zone]
    assets: list[Asset]
    process: Process
    points: list[Point] = Field(default_factory=list)
    polls: list[Poll] = Field(default_factory=list)
    attacks: list[Attack] = Field(default_factory=list)
    v_d = _dur_fields("duration")

    def asset(self, name: str) -> Asset:
        return next(a for a in self.assets if a.name == name)


def _refs(sc: Scenario) -> list[tuple[tuple, str]]:
    """Cross references (zones, assets, attack types) as (location, message)."""
    from cyberrange.attacks import ATTACKS

    errs: list[tuple[tuple, str]] = []
    names: set[str] = set()
    ips: set[str] = set()
    zones = {z.name: z.subnet for z in sc.zones}
    for i, a in enumerate(sc.assets):
        if a.name in names:
            errs.append((("assets", i, "name"), f"duplicate asset name {a.name!r}"))
        if a.ip in ips:
            errs.append((("assets", i, "ip"), f"duplicate IP {a.ip}"))
        names.add(a.name)
        ips.add(a.ip)
        if a.zone not in zones:
            errs.append((("assets", i, "zone"), f"unknown zone {a.zone!r}"))
        elif ipaddress.IPv4Address(a.ip) not in ipaddress.ip_network(zones[a.zone], strict=False):
            errs.append((("assets", i, "ip"), f"{a.ip} is outside zone {a.zone} ({zones[a.zone]})"))
    for i, p in enumerate(sc.polls):
        for key in ("client", "server"):
            if getattr(p, key) not in names:
                errs.append((("polls", i, key), f"unknown asset {getattr(p, key)!r}"))
    for i, p in enumerate(sc.points):
        if p.asset not in names:
            errs.append((("points", i, "asset"), f"unknown asset {p.asset!r}"))
    for i, k in enumerate(sc.attacks):
        if k.type not in ATTACKS:
            errs.append(
                (
                    ("attacks", i, "type"),
                    f"unknown attack type {k.type!r} (known: {', '.join(sorted(ATTACKS))})",
                )
            )
        spec = ATTACKS.get(k.type)
        for name in k.params:
            if spec is not None and name not in spec.params:
                errs.append(
                    (
                        ("attacks", i, "params", name),
                        f"unknown parameter {name!r} for {k.type} "
                        f"(known: {', '.join(sorted(spec.params)) or 'none'})",
                    )
                )
        if spec is not None and k.type not in ("ping_sweep",) and k.target is None and not k.targets:
            errs.append((("attacks", i), f"{k.type} needs a target"))
        if k.attacker is None:
            errs.append((("attacks", i), f"{k.type} needs an attacker"))
        for key in ("attacker", "target"):
            if getattr(k, key) is not None and getattr(k, key) not in names:
                errs.append((("attacks", i, key), f"unknown asset {getattr(k, key)!r}"))
        for j, n in enumerate(k.targets):
            if n not in names:
                errs.append((("attacks", i, "targets", j), f"unknown asset {n!r}"))
    return errs


# ------------------------------------------------------------------------ YAML with line numbers
class _LDict(dict):
    lines: dict[Any, str]
    line: int
    file: str


class _LList(list):
    lines: list[str]
    line: int
    file: str


def _loader(fname: str) -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _LDict:
        d = _LDict()
        d.lines, d.line, d.file = {}, node.start_mark.line + 1, fname
        for k, v in node.value:
            key = loader.construct_object(k, deep=True)
            d[key] = loader.construct_object(v, deep=True)
            d.lines[key] = f"{fname}:{k.start_mark.line + 1}"
        return d

    def sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> _LList:
        lst = _LList(loader.construct_object(v, deep=True) for v in node.value)
        lst.lines = [f"{fname}:{v.start_mark.line + 1}" for v in node.value]
        lst.line, lst.file = node.start_mark.line + 1, fname
        return lst

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    return Loader


def _read(path: Path) -> _LDict:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_loader(str(path)))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ScenarioError(f"{path}{line}: {getattr(e, 'problem', None) or e}") from None
    except OSError as e:
        raise ScenarioError(f"{path}: {e.strerror}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}:1: a scenario is a mapping")
    return data


def _where(data: Any, loc: tuple, default: str) -> str:
    """file:line of the deepest node of `loc` that has a mark."""
    where, node = default, data
    for part in loc:
        if (isinstance(node, _LDict) and part in node) or (
            isinstance(node, _LList) and isinstance(part, int) and part < len(node)
        ):
            where = node.lines[part]
            node = node[part]
        else:
            break
    return where


_MERGED = ("assets", "attacks", "points", "polls")


def load_scenario(path: str | Path, duration: float | None = None) -> Scenario:
    """Load and validate a scenario (a name from the shipped library or a path); `duration` overrides.

    :raise ScenarioError: with file:line of the offending key.
    """
    p = Path(path)
    if not p.exists() and not p.suffix:
        p = SCENARIO_DIR / f"{path}.yml"
    data = _read(p)
    chain = [p]
    while "extends" in data:
        base_name = data.pop("extends")
        bp = (p.parent / base_name) if str(base_name).endswith(".yml") else p.parent / f"{base_name}.yml"
        if bp in chain:
            raise ScenarioError(f"{data.lines.get('extends', p)}: extends loops back to {bp.name}")
        chain.append(bp)
        base = _read(bp)
        for k, v in data.items():
            if k in _MERGED and isinstance(base.get(k), list) and isinstance(v, list):
                merged = _LList([*base[k], *v])
                merged.lines, merged.line, merged.file = [*base[k].lines, *v.lines], v.line, v.file
                base[k] = merged
                base.lines[k] = data.lines[k]
            else:
                base[k] = v
                base.lines[k] = data.lines[k]
        data = base
        p = bp
    try:
        sc = Scenario.model_validate(dict(data))
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = tuple(err["loc"])
            msgs.append(
                f"{_where(data, loc, f'{chain[0]}:1')}: {'.'.join(map(str, loc)) or 'scenario'}: {err['msg']}"
            )
        raise ScenarioError("\n".join(msgs)) from None
    errs = _refs(sc)
    if errs:
        raise ScenarioError(
            "\n".join(
                f"{_where(data, loc, f'{chain[0]}:1')}: {'.'.join(map(str, loc))}: {m}" for loc, m in errs
            )
        )
    if duration is not None:
        sc = sc.model_copy(update={"duration": float(duration)})
    return sc


def list_scenarios() -> list[tuple[str, str]]:
    """(name, one-line description) of every shipped scenario."""
    out = []
    for f in sorted(SCENARIO_DIR.glob("*.yml")):
        try:
            out.append((f.stem, load_scenario(f).description.strip().splitlines()[0]))
        except ScenarioError as e:
            out.append((f.stem, f"INVALID: {e}"))
    return out
