"""The manifest's JSON Schema (2020-12), generated from the capability registry."""

from __future__ import annotations

from .model import registry as reg

SCHEMA_ID = "https://sandboxer.dev/schemas/manifest.schema.json"
_SIZE = {"type": ["string", "integer"], "pattern": "^[0-9]+(k|M|G|T|Ki|Mi|Gi|Ti)?$", "minimum": 0}
_KINDS = {
    "size": _SIZE,
    "count": {"type": "integer", "minimum": 1},
    "cores": {"oneOf": [{"type": "number", "minimum": 0.01}, {"type": "string", "pattern": "^[0-9]+m$"}]},
    "duration": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$"},
}
_PARAM = {
    "ports": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}},
    "names": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}},
    "env-set": {"type": "object", "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                "additionalProperties": {"type": ["string", "number"]}},
}
_WHY = {"type": "string", "description": "why this grant exists (flows into the plan and audit records)"}
_ACCESS = "^(read|write|exec)([+,-](read|write|exec))*$"


def _capability(cap: reg.Capability) -> dict:
    if cap.shape == "preopens":
        return {"description": cap.summary, "type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["path", "access"],
            "properties": {
                "path": {"type": "string", "pattern": "^/", "description": "absolute, normalised path"},
                "access": {"oneOf": [
                    {"type": "string", "pattern": _ACCESS},
                    {"type": "array", "items": {"enum": list(reg.ACCESS_MODES)}, "minItems": 1}]},
                "why": _WHY}}}
    props = {name: {**_PARAM[p.kind], "description": p.help} for name, p in cap.params.items()}
    props["why"] = _WHY
    return {"description": cap.summary, "type": ["object", "null"], "additionalProperties": False,
            "properties": props}


def manifest_schema() -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "sandboxer capability manifest (format 1)",
        "type": "object",
        "additionalProperties": False,
        "required": ["sandboxer"],
        "properties": {
            "sandboxer": {"const": 1, "description": "manifest format version"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "extends": {"type": ["array", "string"], "items": {"type": "string"},
                        "description": "builtin:NAME or a path relative to this file"},
            "imports": {"type": "object", "additionalProperties": False,
                        "properties": {name: _capability(cap) for name, cap in reg.CAPABILITIES.items()}},
            "limits": {"type": "object", "additionalProperties": False,
                       "properties": {k: {**_KINDS[kind], "description": help}
                                      for k, (kind, help) in reg.LIMITS.items()}},
            "on-violation": {"enum": list(reg.ON_VIOLATION),
                             "description": "; ".join(f"{k}: {v}" for k, v in reg.ON_VIOLATION.items())},
            "compat": {"oneOf": [
                {"enum": list(reg.COMPAT_MODES)},
                {"type": "object", "additionalProperties": False,
                 "properties": {m: {"enum": list(reg.COMPAT_MODES)} for m in reg.COMPAT_MECHANISMS}}]},
            "network": {"enum": list(reg.NETWORK_MODES),
                        "description": "none: no network; loopback: private lo; host: the host's network"},
        },
    }


def capability_table() -> str:
    """The README's capability → mechanism → minimum kernel table (Markdown)."""
    rows = ["| capability | grants | seccomp | Landlock | other | minimum kernel |",
            "|---|---|---|---|---|---|"]
    for cap in reg.CAPABILITIES.values():
        sec = " ".join(f"`{g}`" for g in cap.seccomp) or "—"
        if cap.seccomp_note:
            sec += f"; {cap.seccomp_note}"
        rows.append(f"| `{cap.name}` | {cap.summary} | {sec} | {cap.landlock} | {cap.other} | {cap.min_kernel} |")
    return "\n".join(rows)
