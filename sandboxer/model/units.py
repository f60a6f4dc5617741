"""Parse the manifest's value notations: sizes (256Mi), durations (30s), cores (0.5), ports."""

from __future__ import annotations

import re

_SIZE_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
               "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_SIZE_RE = re.compile(r"^([0-9]+)(|k|M|G|T|Ki|Mi|Gi|Ti)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
_DURATION_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")


def parse_size(value: object) -> int:
    """Bytes from `256Mi`, `1G`, `4096`; ValueError with a hint otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("expected a size such as 256Mi, 1Gi or 512M")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    m = _SIZE_RE.match(value.strip())
    if not m:
        raise ValueError(f"'{value}' is not a size (use a whole number with Ki, Mi, Gi, k, M or G, e.g. 256Mi)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


def parse_duration(value: object) -> float:
    """Seconds from `30s`, `5m`, `1h`, `500ms`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("expected a duration such as 30s, 5m or 500ms")
    if isinstance(value, (int, float)):
        raise ValueError(f"'{value}' has no unit (write {value}s for seconds)")
    m = _DURATION_RE.match(value.strip())
    if not m:
        raise ValueError(f"'{value}' is not a duration (use ms, s, m or h, e.g. 30s)")
    seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


def parse_cores(value: object) -> float:
    """CPU cores from `0.5`, `2` or `500m` (millicores, as Kubernetes writes them)."""
    if isinstance(value, bool):
        raise ValueError("expected a number of cores such as 0.5 or 500m")
    if isinstance(value, str) and value.endswith("m") and value[:-1].isdigit():
        cores = int(value[:-1]) / 1000
    elif isinstance(value, (int, float)):
        cores = float(value)
    else:
        raise ValueError(f"'{value}' is not a number of cores (e.g. 0.5 or 500m)")
    if cores < 0.01:
        raise ValueError(f"'{value}' is below the minimum of 0.01 cores (10m)")
    return cores


def parse_count(value: object) -> int:
    """A positive whole number."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def parse_port(value: object) -> int:
    """A TCP/UDP port 1-65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"'{value}' is not a port (1-65535)")
    return value


def format_size(n: int) -> str:
    """256Mi-style rendering for messages."""
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        if n >= _SIZE_UNITS[unit] and n % _SIZE_UNITS[unit] == 0:
            return f"{n // _SIZE_UNITS[unit]}{unit}"
    return str(n)
