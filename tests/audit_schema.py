"""Test helper: every audit record line validated against schemas/audit-record.schema.json.

    from tests.audit_schema import validate_records
    records = validate_records(tmp_path / "audit.jsonl")   # or a list of lines, or the text

Raises AssertionError naming the line and every schema error in it; returns the parsed records.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "audit-record.schema.json"


@lru_cache(maxsize=1)
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _lines(path_or_lines) -> list[str]:
    if isinstance(path_or_lines, (bytes, bytearray)):
        return bytes(path_or_lines).decode().splitlines()
    if isinstance(path_or_lines, str) and path_or_lines.lstrip().startswith("{"):
        return path_or_lines.splitlines()  # the text of a record file
    if isinstance(path_or_lines, (str, os.PathLike)):
        return Path(path_or_lines).read_text().splitlines()
    return [line if isinstance(line, str) else json.dumps(line) for line in path_or_lines]


def validate_records(path_or_lines, *, min_records: int = 1) -> list[dict]:
    """Every line a JSON object valid against the schema (blank lines are errors too)."""
    records, problems = [], []
    for n, line in enumerate(_lines(path_or_lines), 1):
        try:
            rec = json.loads(line)
        except ValueError as e:
            problems.append(f"line {n}: not JSON ({e}): {line[:120]!r}")
            continue
        errors = sorted(validator().iter_errors(rec), key=lambda e: list(e.absolute_path))
        for e in errors:
            where = "/".join(str(p) for p in e.absolute_path) or "(record)"
            problems.append(f"line {n} ({rec.get('type') if isinstance(rec, dict) else '?'}): {where}: {e.message}")
        records.append(rec)
    if len(records) < min_records:
        problems.append(f"{len(records)} records, expected at least {min_records}")
    if problems:
        raise AssertionError("audit records do not match the schema:\n  " + "\n  ".join(problems))
    return records
