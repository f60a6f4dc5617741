"""Stage ②: a located YAML tree → one file's grants and settings, with every problem collected."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field

from ..errors import Diagnostic, Span
from ..manifest.located import Node
from . import registry as reg
from .policy import Grant, Preopen
from .units import parse_cores, parse_count, parse_duration, parse_port, parse_size

ACCESS_SPELLINGS = (*reg.ACCESS_MODES, "read+write", "read+exec", "read+write+exec")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LIMIT_PARSERS = {"size": parse_size, "count": parse_count, "cores": parse_cores,
                  "duration": parse_duration}


@dataclass
class Document:
    """What one manifest file says, before `extends:` is merged."""

    file: str
    extends: list[tuple[str, Span]] = field(default_factory=list)
    name: str | None = None
    description: str | None = None
    grants: dict[str, Grant] = field(default_factory=dict)
    preopens: list[Preopen] = field(default_factory=list)
    limits: dict[str, tuple[object, Span]] = field(default_factory=dict)
    on_violation: tuple[str, Span] | None = None
    compat: dict[str, tuple[str, Span]] = field(default_factory=dict)
    network: tuple[str, Span] | None = None


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Checker:
    def __init__(self, file: str) -> None:
        self.doc = Document(file)
        self.diags: list[Diagnostic] = []

    def error(self, span: Span, message: str, hint: str | None = None) -> None:
        self.diags.append(Diagnostic(span, message, hint))

    def expect(self, node: Node, kind: str, what: str, hint: str | None = None) -> bool:
        if node.kind == kind or (kind == "mapping" and node.kind == "null"):
            return True
        shown = {"mapping": "a mapping", "list": "a list", "str": "a string"}[kind]
        self.error(node.span, f"{what} must be {shown}, not {_describe(node)}", hint)
        return False

    def unknown_key(self, key: str, node: Node, where: str, choices) -> None:
        self.error(node.key_span or node.span, f"unknown key '{key}' in {where}{did_you_mean(key, choices)}",
                   f"allowed keys: {', '.join(sorted(choices))}")

    # --- top level -------------------------------------------------------------------------
    def document(self, root: Node) -> Document:
        if not self.expect(root, "mapping", "the manifest", "start with `sandboxer: 1`"):
            return self.doc
        fields = root.value or {}
        for key, node in fields.items():
            if key not in reg.TOP_LEVEL:
                self.unknown_key(key, node, "the manifest", reg.TOP_LEVEL)
        version = fields.get("sandboxer")
        if version is None:
            self.error(root.span, "missing 'sandboxer: 1' (the manifest format version)",
                       "add `sandboxer: 1` as the first line")
        elif version.value != 1:
            self.error(version.span, f"unsupported manifest format {version.value!r}",
                       "this sandboxer reads format 1: write `sandboxer: 1`")
        for key in ("name", "description"):
            if key in fields and self.expect(fields[key], "str", f"'{key}'"):
                setattr(self.doc, key, fields[key].value)
        if "extends" in fields:
            self.extends(fields["extends"])
        if "imports" in fields:
            self.imports(fields["imports"])
        if "limits" in fields:
            self.limits(fields["limits"])
        if "on-violation" in fields:
            node = fields["on-violation"]
            if node.value in reg.ON_VIOLATION:
                self.doc.on_violation = (node.value, node.span)
            else:
                self.error(node.span, f"on-violation must be one of deny, kill, log, not {_describe(node)}",
                           "deny: the call fails; kill: the workload is killed; log: allowed and recorded")
        if "compat" in fields:
            self.compat(fields["compat"])
        if "network" in fields:
            node = fields["network"]
            if node.value in reg.NETWORK_MODES:
                self.doc.network = (node.value, node.span)
            else:
                self.error(node.span, f"network must be one of none, loopback, host, not {_describe(node)}",
                           "none: no network; loopback: a private 127.0.0.1; host: the host's network")
        return self.doc

    def extends(self, node: Node) -> None:
        items = [node] if node.kind == "str" else node.value if node.kind == "list" else None
        if items is None:
            self.error(node.span, f"extends must be a list of profiles, not {_describe(node)}",
                       "e.g. extends: [builtin:dynamic-linking, ./base.yaml]")
            return
        for item in items:
            if self.expect(item, "str", "an extends entry", "write builtin:NAME or a relative path"):
                self.doc.extends.append((item.value, item.span))

    def compat(self, node: Node) -> None:
        if node.kind == "str":
            if node.value in reg.COMPAT_MODES:
                for mech in reg.COMPAT_MECHANISMS:
                    self.doc.compat[mech] = (node.value, node.span)
            else:
                self.error(node.span, f"compat must be strict or best-effort, not {_describe(node)}")
            return
        if not self.expect(node, "mapping", "compat", "e.g. compat: {landlock: best-effort}"):
            return
        for key, value in (node.value or {}).items():
            if key not in reg.COMPAT_MECHANISMS:
                self.unknown_key(key, value, "compat", reg.COMPAT_MECHANISMS)
            elif value.value not in reg.COMPAT_MODES:
                self.error(value.span, f"compat.{key} must be strict or best-effort, not {_describe(value)}")
            else:
                self.doc.compat[key] = (value.value, value.span)

    def limits(self, node: Node) -> None:
        if not self.expect(node, "mapping", "limits", "e.g. limits: {memory: 256Mi, pids: 32}"):
            return
        for key, value in (node.value or {}).items():
            if key not in reg.LIMITS:
                self.unknown_key(key, value, "limits", reg.LIMITS)
                continue
            kind, _ = reg.LIMITS[key]
            try:
                parsed = _LIMIT_PARSERS[kind](value.value)
            except ValueError as e:
                self.error(value.span, f"limits.{key}: {e}")
                continue
            self.doc.limits[key] = (parsed, value.span)

    # --- imports ---------------------------------------------------------------------------
    def imports(self, node: Node) -> None:
        if not self.expect(node, "mapping", "imports", "e.g. imports: {wasi:cli/stdout: {}}"):
            return
        for name, value in (node.value or {}).items():
            cap = reg.CAPABILITIES.get(name)
            span = value.key_span or value.span
            if cap is None:
                self.error(span, f"unknown capability '{name}'{did_you_mean(name, reg.CAPABILITIES)}",
                           "`sandboxer explain --list` shows every capability")
                continue
            if cap.shape == "preopens":
                self.preopens(value)
                self.doc.grants[name] = Grant(name, {}, None, span)
            else:
                self.grant(cap, value, span)

    def grant(self, cap: reg.Capability, node: Node, span: Span) -> None:
        if not self.expect(node, "mapping", f"'{cap.name}'", "write {} to grant it with no parameters"):
            return
        params: dict = {}
        why = None
        for key, value in (node.value or {}).items():
            if key == "why":
                if self.expect(value, "str", "why"):
                    why = value.value
                continue
            param = cap.params.get(key)
            if param is None:
                self.unknown_key(key, value, f"'{cap.name}'", [*cap.params, "why"])
                continue
            parsed = self.param(cap.name, key, param, value)
            if parsed is not None:
                params[key] = parsed
        self.doc.grants[cap.name] = Grant(cap.name, params, why, span)

    def param(self, cap: str, key: str, param: reg.Param, node: Node):
        where = f"{cap}.{key}"
        if param.kind in ("ports", "names"):
            if not self.expect(node, "list", where, "write a list, e.g. [443]" if param.kind == "ports"
                               else "write a list, e.g. [LANG, PATH]"):
                return None
            out = []
            for item in node.value:
                if param.kind == "ports":
                    try:
                        out.append(parse_port(item.value))
                    except ValueError as e:
                        self.error(item.span, f"{where}: {e}")
                elif not isinstance(item.value, str) or not _ENV_NAME.match(item.value):
                    self.error(item.span, f"{where}: {_describe(item)} is not an environment variable name")
                else:
                    out.append(item.value)
            return sorted(set(out))
        if param.kind == "env-set":
            if not self.expect(node, "mapping", where, "write NAME: value pairs"):
                return None
            out = {}
            for name, value in (node.value or {}).items():
                if not _ENV_NAME.match(name):
                    self.error(value.key_span or value.span, f"{where}: '{name}' is not an environment variable name")
                elif not isinstance(value.value, (str, int, float)) or isinstance(value.value, bool):
                    self.error(value.span, f"{where}.{name} must be a string, not {_describe(value)}")
                else:
                    out[name] = str(value.value)
            return out
        raise AssertionError(param.kind)  # pragma: no cover - the registry only uses the kinds above

    def preopens(self, node: Node) -> None:
        if not self.expect(node, "list", "'wasi:filesystem/preopens'",
                           "write a list of {path: /abs/path, access: read}"):
            return
        for item in node.value:
            if not self.expect(item, "mapping", "a preopen entry", "write {path: /abs/path, access: read}"):
                continue
            entry = item.value or {}
            for key, value in entry.items():
                if key not in ("path", "access", "why"):
                    self.unknown_key(key, value, "a preopen entry", ("path", "access", "why"))
            path = entry.get("path")
            access = entry.get("access")
            if path is None:
                self.error(item.span, "a preopen entry needs a 'path'", "e.g. {path: /srv/data, access: read}")
                continue
            if access is None:
                self.error(item.span, f"preopen '{path.value}' needs an 'access'",
                           "read, write, exec, or a combination such as read+write or [read, exec]")
                continue
            modes = self.access(access)
            checked = self.path(path)
            why = entry["why"].value if "why" in entry and self.expect(entry["why"], "str", "why") else None
            if modes and checked:
                self.doc.preopens.append(Preopen(checked, frozenset(modes), why, path.span))

    def path(self, node: Node) -> str | None:
        if not self.expect(node, "str", "path"):
            return None
        p = node.value
        if not p.startswith("/"):
            self.error(node.span, f"path '{p}' is relative", "write an absolute path such as /srv/data")
            return None
        norm = os.path.normpath(p)
        if norm.startswith("//"):
            norm = "/" + norm.lstrip("/")
        if norm != p:
            self.error(node.span, f"path '{p}' is not normalised", f"write '{norm}'")
            return None
        return p

    def access(self, node: Node) -> set[str] | None:
        if node.kind == "str":
            parts = re.split(r"[+,]|-(?=write|exec|read)", node.value)
        elif node.kind == "list" and all(i.kind == "str" for i in node.value):
            parts = [i.value for i in node.value]
        else:
            self.error(node.span, f"access must be read, write, exec or a combination, not {_describe(node)}")
            return None
        modes = set()
        for part in (p.strip() for p in parts):
            if part not in reg.ACCESS_MODES:
                self.error(node.span, f"unknown access '{part}'{did_you_mean(part, ACCESS_SPELLINGS)}",
                           "use read, write, exec, or a combination such as read+write")
                return None
            modes.add(part)
        return modes


def _describe(node: Node) -> str:
    if node.kind in ("mapping", "list", "null"):
        return {"mapping": "a mapping", "list": "a list", "null": "nothing"}[node.kind]
    return f"{node.kind} {node.value!r}"


def validate_document(root: Node, file: str) -> tuple[Document, list[Diagnostic]]:
    """Check one parsed manifest file; returns what it says and every problem found."""
    checker = _Checker(file)
    doc = checker.document(root)
    return doc, checker.diags
