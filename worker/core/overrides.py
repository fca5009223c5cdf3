"""The operator's plan speeds file (`PLAN_SPEEDS_FILE`), YAML or CSV.

It fills in plans WispHub gives no speed for, and overrides any other. Speeds are kbps numbers
or MikroTik-style strings (`"20M"`); the optional burst applies to the download direction.

YAML::

    Comunitario PCQ:            # the plan's name in WispHub
      download: 30000           # kbps, or "30M"
      upload: 10M
      burst_rate: 40M           # optional
      burst_threshold: 30M      # optional
      burst_duration: 10        # optional, seconds

CSV (header required)::

    plan,download,upload,burst_rate,burst_threshold,burst_duration
    Comunitario PCQ,30M,10M,40M,30M,10
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml

from worker.core.errors import ConfigError
from worker.core.plans import Speeds
from worker.core.speeds import SpeedError, parse_speed

FIELDS = ("download", "upload", "burst_rate", "burst_threshold", "burst_duration")


def load_overrides(path: str | None) -> dict[str, Speeds]:
    """The file's speeds by plan name; empty without a file; `ConfigError` when it is bad."""
    if not path:
        return {}
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"PLAN_SPEEDS_FILE {path}: {exc.strerror}") from exc
    if file.suffix.lower() in (".yaml", ".yml"):
        return parse_yaml(text, path)
    if file.suffix.lower() == ".csv":
        return parse_csv(text, path)
    raise ConfigError(f"PLAN_SPEEDS_FILE {path}: use a .yaml, .yml or .csv file")


def parse_yaml(text: str, source: str = "PLAN_SPEEDS_FILE") -> dict[str, Speeds]:
    """Speeds from the YAML form."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected plan names mapped to speeds")
    entries = {}
    for plan, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: plan {plan!r}: expected download/upload fields")
        entries[str(plan)] = values
    return _speeds(entries, source)


def parse_csv(text: str, source: str = "PLAN_SPEEDS_FILE") -> dict[str, Speeds]:
    """Speeds from the CSV form."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"plan", "download", "upload"} <= set(reader.fieldnames):
        raise ConfigError(f"{source}: the header must name plan, download and upload")
    entries = {}
    for line, record in enumerate(reader, start=2):
        plan = (record.get("plan") or "").strip()
        if not plan:
            raise ConfigError(f"{source}: line {line}: no plan name")
        entries[plan] = {k: v for k, v in record.items() if k != "plan" and v not in (None, "")}
    return _speeds(entries, source)


def _speeds(entries: dict[str, dict[str, Any]], source: str) -> dict[str, Speeds]:
    result = {}
    for plan, values in entries.items():
        unknown = set(values) - set(FIELDS)
        if unknown:
            raise ConfigError(f"{source}: plan {plan!r}: unknown fields {sorted(unknown)}")
        try:
            result[plan.strip()] = Speeds(
                downlink_kbps=parse_speed(_text(values.get("download"))),
                uplink_kbps=parse_speed(_text(values.get("upload"))),
                burst_rate_kbps=_optional_speed(values.get("burst_rate")),
                burst_threshold_kbps=_optional_speed(values.get("burst_threshold")),
                burst_duration_s=_seconds(values.get("burst_duration")),
            )
        except (SpeedError, ValueError) as exc:
            raise ConfigError(f"{source}: plan {plan!r}: {exc}") from None
    return result


def _text(value: Any) -> Any:
    """Numbers in the file are kbps; speed strings keep their unit."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value}k"
    if isinstance(value, str) and value.strip().isdecimal():
        return f"{value.strip()}k"
    return value


def _optional_speed(value: Any) -> int | None:
    return None if value is None else parse_speed(_text(value))


def _seconds(value: Any) -> int | None:
    if value is None:
        return None
    seconds = int(str(value).strip())
    if seconds <= 0:
        raise ValueError(f"burst_duration must be a positive number of seconds, not {value!r}")
    return seconds
