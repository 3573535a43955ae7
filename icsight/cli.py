"""The `icsight` command line: sensors, queries, the demo (and, as they land, detect, range, serve).

stdout carries only requested data (`--jsonl -`, `--json`); progress, logs and summaries go to
stderr. Exit codes are in icsight/errors.py.
"""

from __future__ import annotations

import logging
import sys

import click

from icsight import errors
from icsight.errors import CaptureError, ConfigError
from icsight.settings import Settings

log = logging.getLogger("icsight")


def _settings(data_dir: str | None, config: str | None) -> Settings:
    try:
        return Settings.load(data_dir=data_dir, config=config)
    except ConfigError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_CONFIG)


data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                               help="Data directory (default: $ICSIGHT_DATA_DIR, else the per-user dir).")
config_option = click.option("--config", type=click.Path(dir_okay=False), default=None,
                             help="YAML settings file (default: DATA_DIR/icsight.yml if present).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging on stderr.")
@click.version_option(package_name="icsight")
def main(verbose: int) -> None:
    """icsight: industrial cybersecurity situational awareness (工业信息安全态势感知)."""
    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


@main.group()
def sensor() -> None:
    """Passive sensors: read captures or watch an interface."""


def _open_sinks(settings: Settings, jsonl: str | None, store: bool):
    from sensors.run import jsonl_sink

    sinks, closers = [], []
    st = None
    if store:
        from storage import open_store
        from storage.errors import StoreError

        try:
            st = open_store(settings)
        except StoreError as e:
            click.echo(f"icsight: {e}", err=True)
            sys.exit(errors.E_STORE)
        sinks.append(st.append)
        closers.append(st.close)
    if jsonl == "-":
        sinks.append(jsonl_sink(sys.stdout))
        closers.append(sys.stdout.flush)
    elif jsonl:
        f = open(jsonl, "w", encoding="utf-8")  # noqa: SIM115 - closed via closers
        sinks.append(jsonl_sink(f))
        closers.append(f.close)
    return st, sinks, closers


def _make_sensor(settings: Settings, st):
    from icsight.wiring import build_sensor

    try:
        return build_sensor(settings, st)
    except ConfigError as e:
        click.echo(f"icsight: {e}", err=True)
        sys.exit(errors.E_CONFIG)


def _summary(s, n_events: int) -> None:
    kinds = {k[7:]: v for k, v in sorted(s.stats.items()) if k.startswith("events.")}
    click.echo(f"{s.stats['frames']} frames, {n_events} events: "
               + ", ".join(f"{k} {v}" for k, v in kinds.items()), err=True)
    if s.weird_counts:
        click.echo("weird: " + ", ".join(f"{p}/{n} {c}" for (p, n), c in sorted(s.weird_counts.items())),
                   err=True)


@sensor.command("read")
@click.argument("captures", nargs=-1, required=True, type=click.Path())
@data_dir_option
@config_option
@click.option("--jsonl", default=None, metavar="FILE|-", help="Also write JSON lines ('-' = stdout).")
@click.option("--no-store", is_flag=True, help="Do not write to the store (only --jsonl).")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr (when a terminal).")
def sensor_read(captures: tuple[str, ...], data_dir: str | None, config: str | None, jsonl: str | None,
                no_store: bool, progress: bool) -> None:
    """Parse pcap / pcapng / .gz CAPTURES into the store (and optionally JSON lines)."""
    from sensors.run import read_captures

    settings = _settings(data_dir, config)
    st, sinks, closers = _open_sinks(settings, jsonl, not no_store)
    s = _make_sensor(settings, st)
    code = errors.E_OK
    n = 0
    try:
        n = read_captures(s, captures, sinks, progress=progress, batch=settings.batch_size)
    except CaptureError as e:
        click.echo(f"icsight: {e} (events before it were kept)", err=True)
        code = errors.E_CAPTURE
    finally:
        s.close()                       # the detection worker, if any
        for c in closers:
            c()
    _summary(s, n)
    if st is not None:
        click.echo(f"store: {settings.db_path}", err=True)
    sys.exit(code)


@sensor.command("live")
@click.argument("iface")
@data_dir_option
@config_option
@click.option("--filter", "bpf", default=None, help="BPF capture filter, e.g. 'tcp port 502'.")
@click.option("--count", default=0, help="Stop after this many frames (0 = until interrupted).")
@click.option("--jsonl", default=None, metavar="FILE|-", help="Also write JSON lines ('-' = stdout).")
@click.option("--no-store", is_flag=True, help="Do not write to the store.")
def sensor_live(iface: str, data_dir: str | None, config: str | None, bpf: str | None, count: int,
                jsonl: str | None, no_store: bool) -> None:
    """Watch interface IFACE until interrupted (Ctrl-C / SIGTERM), flushing what it has on exit."""
    from sensors.run import run_live

    settings = _settings(data_dir, config)
    st, sinks, closers = _open_sinks(settings, jsonl, not no_store)
    s = _make_sensor(settings, st)
    n = 0
    code = errors.E_OK
    from scapy.error import Scapy_Exception

    try:
        n = run_live(s, iface, sinks, bpf=bpf, count=count)
    except (OSError, ValueError, Scapy_Exception) as e:     # scapy: ValueError for an unknown interface
        click.echo(f"icsight: cannot capture on {iface}: {e}", err=True)
        code = errors.E_INTERFACE
    finally:
        s.close()                       # the detection worker, if any
        for c in closers:
            c()
    _summary(s, n)
    sys.exit(code)


def _register_optional() -> None:
    """Commands that live with their stage (storage views, demo, range, detect)."""
    import importlib

    for mod, names in (("icsight.cli_query", ("events", "assets")), ("icsight.demo", ("demo",)),
                       ("cyberrange.cli", ("range",)), ("detect.cli", ("rules",)),
                       ("detect.cli_learn", ("detect", "alerts", "eval"))):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        for name in names:
            cmd = getattr(m, name, None)
            if cmd is not None:
                main.add_command(cmd, name)


_register_optional()


if __name__ == "__main__":
    main()
