"""CLI views over the event store: `icsight events` and `icsight assets` (registered in icsight/cli.py).

stdout carries only the requested data (JSON lines with --json, else a table); errors go to stderr
with the exit codes of icsight/errors.py (E_STORE when the store cannot be opened or read).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import click
import orjson

from icsight import errors
from icsight.errors import ConfigError
from icsight.events import Event, ts_to_iso
from icsight.settings import Settings


def parse_time(value: str) -> float:
    """Epoch seconds, or ISO 8601 (date or date-time; a time without offset is UTC).

    :raise ValueError: neither.
    """
    try:
        return float(value)
    except ValueError:
        pass
    dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class _TimeParam(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_time(str(value))
        except ValueError:
            self.fail(f"{value!r} is neither epoch seconds nor ISO 8601 (e.g. 2019-05-17T03:20:41Z)",
                      param, ctx)


def _field_filter(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in values:
        key, sep, raw = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r}: expected KEY=VALUE", param_hint="--field")
        try:
            val = orjson.loads(raw)                    # 3 -> number, true -> bool, "x" -> string
            if isinstance(val, (dict, list)):
                val = raw
        except orjson.JSONDecodeError:
            val = raw                                  # a bare word is a string
        out[key] = val
    return out


def _open(data_dir: str | None):
    from storage import open_store
    from storage.errors import StoreError

    try:
        settings = Settings.load(data_dir=data_dir)
    except ConfigError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_CONFIG)
    try:
        return open_store(settings, readonly=True)
    except StoreError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_STORE)


def _ep(ip: str | None, port: int | None) -> str:
    if not ip:
        return "-"
    host = f"[{ip}]" if ":" in ip and port is not None else ip
    return f"{host}:{port}" if port is not None else host


_SUMMARY_KEYS = ("func", "function", "service", "type_id", "name", "conn_state", "status", "exception",
                 "address", "quantity", "reason")


def _summary(e: Event) -> str:
    f = e.fields
    parts = [f"{k}={f[k]}" for k in _SUMMARY_KEYS if k in f and f[k] not in (None, "", [])]
    if e.kind == "asset" and "changes" in f:
        parts = ["changes=" + ",".join(map(str, f["changes"]))]
    return " ".join(parts)[:100]


def _print_events(events: Iterable[Event], as_json: bool) -> int:
    out = sys.stdout
    n = 0
    if as_json:
        for e in events:
            out.write(e.to_json() + "\n")
            n += 1
        return n
    out.write(f"{'time (UTC)':<27} {'kind':<10} {'action':<9} {'src':<22} {'dst':<22} fields\n")
    for e in events:
        out.write(f"{ts_to_iso(e.ts):<27} {e.kind:<10} {e.action:<9} {_ep(e.src.ip, e.src.port):<22} "
                  f"{_ep(e.dst.ip, e.dst.port):<22} {_summary(e)}\n")
        n += 1
    return n


@click.command("events")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Data directory (default: $ICSIGHT_DATA_DIR, else the per-user data dir).")
@click.option("--since", type=_TimeParam(), default=None, help="From this time (ISO 8601 or epoch seconds).")
@click.option("--until", type=_TimeParam(), default=None, help="Before this time (exclusive).")
@click.option("--kind", "kinds", multiple=True, help="Event kind (flow, modbus, asset ...); repeatable.")
@click.option("--protocol", default=None, help="Transactions of this protocol (e.g. modbus, dnp3).")
@click.option("--ip", default=None, help="Events whose source or destination is this IP.")
@click.option("--port", type=int, default=None, help="With --ip: that side's port; alone: either port.")
@click.option("--action", default=None, help="read, write, program, control, diagnose, discover, ...")
@click.option("--tenant", default=None, help="Only this tenant's events.")
@click.option("--field", "field_eq", multiple=True, metavar="KEY=VALUE",
              help="Equality on a top-level protocol field, e.g. func=READ_COILS or func_code=3; repeatable.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many events.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines (the event JSON) instead of a table.")
def events(data_dir: str | None, since: float | None, until: float | None, kinds: tuple[str, ...],
           protocol: str | None, ip: str | None, port: int | None, action: str | None, tenant: str | None,
           field_eq: tuple[str, ...], limit: int | None, as_json: bool) -> None:
    """Stored events, oldest first, filtered by time, kind, protocol, address, action or field."""
    from storage import EventQuery
    from storage.errors import StoreError

    q = EventQuery(since=since, until=until, kinds=kinds, protocol=protocol, ip=ip, port=port, action=action,
                   tenant=tenant, fields=_field_filter(field_eq), limit=limit)
    store = _open(data_dir)
    try:
        n = _print_events(store.query(q), as_json)
    except StoreError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_STORE)
    except ValueError as e:                         # an invalid field name
        raise click.BadParameter(str(e), param_hint="--field") from e
    finally:
        store.close()
    if not as_json:
        click.echo(f"{n} event(s)", err=True)


def _roles(rec: dict[str, Any]) -> str:
    return " ".join(f"{p}:{'/'.join(r)}" for p, r in (rec.get("roles") or {}).items())


def _identity(rec: dict[str, Any]) -> str:
    return "; ".join(f"{k}=" + "|".join(str(v["value"]) for v in vals)
                     for k, vals in (rec.get("identity") or {}).items())


@click.command("assets")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Data directory (default: $ICSIGHT_DATA_DIR, else the per-user data dir).")
@click.option("--tenant", default=None, help="Only this tenant's devices.")
@click.option("--json", "as_json", is_flag=True, help="One JSON asset record per line instead of a table.")
def assets(data_dir: str | None, tenant: str | None, as_json: bool) -> None:
    """The device inventory: IP, MAC and vendor, roles, protocols and identity per device."""
    from storage.errors import StoreError

    store = _open(data_dir)
    try:
        recs = store.assets(tenant)
    except StoreError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_STORE)
    finally:
        store.close()
    out = sys.stdout
    if as_json:
        for r in recs:
            out.write(orjson.dumps(r, option=orjson.OPT_SORT_KEYS).decode() + "\n")
        return
    out.write(f"{'ip':<16} {'mac':<18} {'vendor':<24} {'roles':<34} {'protocols':<16} identity\n")
    for r in recs:
        out.write(f"{r['ip']:<16} {r.get('mac') or '-':<18} {(r.get('vendor') or '-')[:24]:<24} "
                  f"{_roles(r):<34} {','.join(r.get('protocols') or ()) or '-':<16} {_identity(r)}\n")
    click.echo(f"{len(recs)} device(s)", err=True)
