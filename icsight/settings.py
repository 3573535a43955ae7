"""One Settings object, built once (CLI or app factory) and passed down; modules never read os.environ."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from icsight.errors import ConfigError

CONFIG_NAME = "icsight.yml"


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """$ICSIGHT_DATA_DIR, else the per-user data directory (platformdirs)."""
    env = os.environ if env is None else env
    if env.get("ICSIGHT_DATA_DIR"):
        return Path(env["ICSIGHT_DATA_DIR"])
    import platformdirs

    return Path(platformdirs.user_data_dir("icsight", appauthor=False))


@dataclass
class Settings:
    """Runtime configuration of a sensor or server."""

    data_dir: Path
    sensor: str = "sensor-1"
    tenant: str = "default"
    # Extra or replacing port-map entries: {"modbus": {"tcp": [502, 5020]}, ...}. Module defaults apply
    # for protocols not named here.
    ports: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    probe_unknown: bool = True          # identify ICS protocols by payload shape on unusual ports
    tcp_idle_timeout: float = 300.0     # Zeek's tcp_inactivity_timeout
    udp_idle_timeout: float = 60.0
    close_delay: float = 5.0            # Zeek's tcp_close_delay
    batch_size: int = 5000              # events per store transaction
    # The site's rule lists ({name: [addresses or CIDRs]}), replacing the sample lists of rules/lists.yml
    # of the same name (engineering_hosts, iec104_masters ...).
    lists: dict[str, list[str]] = field(default_factory=dict)
    # Detection in its own process, pipelined with the parsers (sensors.offload): null = when the
    # machine has 2+ CPUs; false = inline in the sensor process.
    detect_process: bool | None = None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "events.sqlite"

    @classmethod
    def load(cls, data_dir: str | Path | None = None, config: str | Path | None = None,
             env: Mapping[str, str] | None = None) -> Settings:
        """Data dir from the argument or the environment; YAML config from `config` or DATA_DIR/icsight.yml.

        :raise ConfigError: the config file is not valid YAML or has unknown keys.
        """
        ddir = Path(data_dir) if data_dir else default_data_dir(env)
        path = Path(config) if config else ddir / CONFIG_NAME
        values: dict[str, Any] = {}
        if path.exists():
            try:
                loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f":{mark.line + 1}" if mark else ""
                raise ConfigError(f"{path}{where}: invalid YAML: {e}") from e
            if not isinstance(loaded, dict):
                raise ConfigError(f"{path}: expected a mapping at the top level")
            allowed = {f for f in cls.__dataclass_fields__ if f != "data_dir"}
            unknown = set(loaded) - allowed
            if unknown:
                raise ConfigError(f"{path}: unknown setting(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
            values = loaded
        elif config:
            raise ConfigError(f"{path}: config file not found")
        lists = values.get("lists", {})
        if not isinstance(lists, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str | int) for x in v) for v in lists.values()
        ):
            raise ConfigError(f"{path}: lists: a mapping of list names to lists of addresses or networks")
        return cls(data_dir=ddir, **values)
