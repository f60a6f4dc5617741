"""Read a module's or component's imports (pure: a small binary reader, no wasmtime) and map them to capabilities.

WASI preview 1 functions map to the capability whose power they use; preview 2 imports are WIT
interface names, which are the capability names themselves once the `@version` is dropped. Imports
the runtime serves to every workload (argv, exit, streams on fds it already has) need nothing.
"""

from __future__ import annotations

from collections import namedtuple

from .detect import kind_of

BASE = ()  # needs no capability
PREVIEW1_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")

_FS = ("wasi:filesystem/preopens",)
_NET_ANY = ("wasi:sockets/tcp", "wasi:sockets/udp", "wasi:sockets/ip-name-lookup")

# WASI preview 1: function → every capability it needs (each a tuple of alternatives).
# clock_* serve the wall and the monotonic clock through one function and wasmtime cannot withhold
# either clock, so they need both grants: granting one clock must not hand over the other.
PREVIEW1: dict[str, tuple[tuple[str, ...], ...]] = {
    "args_get": (), "args_sizes_get": (),
    "environ_get": (("wasi:cli/environment",),), "environ_sizes_get": (("wasi:cli/environment",),),
    "clock_res_get": (("wasi:clocks/wall-clock",), ("wasi:clocks/monotonic-clock",)),
    "clock_time_get": (("wasi:clocks/wall-clock",), ("wasi:clocks/monotonic-clock",)),
    "poll_oneoff": (("wasi:clocks/monotonic-clock",),),  # sleeping is waiting on a monotonic-clock timer
    "random_get": (("wasi:random/random",),),
    "proc_exit": (), "proc_raise": (), "sched_yield": (),
    # fd_* act on descriptors the module already has: stdio (null unless granted) and preopens.
    **{f"fd_{n}": () for n in (
        "advise", "allocate", "close", "datasync", "fdstat_get", "fdstat_set_flags", "fdstat_set_rights",
        "filestat_get", "filestat_set_size", "filestat_set_times", "pread", "prestat_dir_name", "prestat_get",
        "pwrite", "read", "readdir", "renumber", "seek", "sync", "tell", "write")},
    **{f"path_{n}": (_FS,) for n in (
        "create_directory", "filestat_get", "filestat_set_times", "link", "open", "readlink",
        "remove_directory", "rename", "symlink", "unlink_file")},
    **{f"sock_{n}": (("wasi:sockets/tcp",),) for n in ("accept", "recv", "send", "shutdown")},
}

# WASI preview 2 interfaces that are not capabilities of their own: what the runtime gives everyone.
PREVIEW2_BASE = {
    "wasi:cli/exit": "leave with a status", "wasi:cli/run": "the command's entry point",
    "wasi:cli/terminal-input": "terminal types", "wasi:cli/terminal-output": "terminal types",
    "wasi:cli/terminal-stdin": "is stdin a terminal", "wasi:cli/terminal-stdout": "is stdout a terminal",
    "wasi:cli/terminal-stderr": "is stderr a terminal",
    "wasi:io/error": "stream error type", "wasi:io/poll": "waiting on pollables", "wasi:io/streams": "byte streams",
    "wasi:filesystem/types": "descriptor types (descriptors come only from wasi:filesystem/preopens)",
    "wasi:sockets/network": "network types (a network handle comes only from wasi:sockets/instance-network)",
}
PREVIEW2_ALIASES: dict[str, tuple[str, ...]] = {
    "wasi:clocks/timezone": ("wasi:clocks/wall-clock",),
    "wasi:random/insecure-seed": ("wasi:random/insecure",),
    "wasi:sockets/tcp-create-socket": ("wasi:sockets/tcp",),
    "wasi:sockets/udp-create-socket": ("wasi:sockets/udp",),
    "wasi:sockets/instance-network": _NET_ANY,
}
PREVIEW2_CAPABILITIES = (
    "wasi:cli/environment", "wasi:cli/stdin", "wasi:cli/stdout", "wasi:cli/stderr",
    "wasi:clocks/monotonic-clock", "wasi:clocks/wall-clock", "wasi:random/random", "wasi:random/insecure",
    "wasi:filesystem/preopens", "wasi:sockets/tcp", "wasi:sockets/udp", "wasi:sockets/ip-name-lookup",
)


class WasmFormatError(ValueError):
    """The bytes are not a WebAssembly binary this reader understands."""


# Named tuples, not dataclasses: `dataclasses` imports inspect (~6 ms on every wasm run).
class Need(namedtuple("Need", "item needs")):
    """One import and the capabilities it needs: each entry a tuple of alternatives; None = nothing grants it.

    item: "wasi_snapshot_preview1.environ_get" or "wasi:cli/environment@0.2.0";
    needs: tuple[tuple[str, ...], ...] | None.
    """

    __slots__ = ()


class Missing(namedtuple("Missing", "capability alternatives items")):
    """A capability the manifest lacks (or None for an import no capability provides) and who asked for it.

    capability: str | None, the first alternative when several would do; alternatives: tuple[str, ...];
    items: tuple[str, ...].
    """

    __slots__ = ()


# ---------------------------------------------------------------------------------------------
# the binary reader


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise WasmFormatError("unexpected end of the binary")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7
            if shift > 63:
                raise WasmFormatError("LEB128 number too long")

    sleb = uleb  # only skipped here, never interpreted

    def name(self) -> str:
        n = self.uleb()
        if self.pos + n > self.end:
            raise WasmFormatError("a name runs past the end of its section")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise WasmFormatError("a name is not UTF-8") from None

    def limits(self) -> None:
        flags = self.byte()
        self.uleb()
        if flags & 1:
            self.uleb()

    def valtype(self) -> None:
        if self.byte() in (0x63, 0x64):  # (ref null? heaptype): the heap type follows as s33
            self.sleb()


def _sections(data: bytes):
    r = _Reader(data, 8)
    while r.pos < r.end:
        sid = r.byte()
        size = r.uleb()
        if r.pos + size > r.end:
            raise WasmFormatError(f"section {sid} runs past the end of the file")
        yield sid, r.pos, r.pos + size
        r.pos += size


def _core_imports(data: bytes) -> list[tuple[str, str]]:
    out = []
    for sid, start, end in _sections(data):
        if sid != 2:
            continue
        r = _Reader(data, start, end)
        for _ in range(r.uleb()):
            module, field = r.name(), r.name()
            kind = r.byte()
            if kind == 0x00:  # func: type index
                r.uleb()
            elif kind == 0x01:  # table: reftype, limits
                r.valtype()
                r.limits()
            elif kind == 0x02:  # memory: limits
                r.limits()
            elif kind == 0x03:  # global: valtype, mutability
                r.valtype()
                r.byte()
            elif kind == 0x04:  # tag: attribute, type index
                r.byte()
                r.uleb()
            else:
                raise WasmFormatError(f"unknown import kind 0x{kind:02x}")
            out.append((module, field))
    return out


def _component_imports(data: bytes) -> list[str]:
    """The component's own (top-level) imports; nested components' imports are satisfied inside it."""
    out = []
    for sid, start, end in _sections(data):
        if sid != 10:
            continue
        r = _Reader(data, start, end)
        for _ in range(r.uleb()):
            tag = r.byte()  # importname': 0x00 name | 0x01 name versionsuffix
            if tag not in (0x00, 0x01):
                raise WasmFormatError(f"unknown import name encoding 0x{tag:02x}")
            name = r.name()
            if tag == 0x01:
                r.name()
            desc = r.byte()
            if desc == 0x00:  # core module: 0x11 typeidx
                r.byte()
                r.uleb()
            elif desc in (0x01, 0x04, 0x05):  # func, component, instance: typeidx
                r.uleb()
            elif desc == 0x02:  # value bound: 0x00 valueidx | 0x01 valtype (0x00 typeidx | a primitive)
                if r.byte() == 0x00 or r.byte() == 0x00:
                    r.uleb()
            elif desc == 0x03:  # type bound: 0x00 typeidx (eq) | 0x01 (sub resource)
                if r.byte() == 0x00:
                    r.uleb()
            else:
                raise WasmFormatError(f"unknown extern kind 0x{desc:02x} for import {name!r}")
            out.append(name)
    return out


def read_imports(data: bytes) -> tuple[str, list[str]]:
    """(kind, import items): 'module' items are "module.field", 'component' items are interface names."""
    kind = kind_of(data[:8])
    if kind is None:
        raise WasmFormatError("not a WebAssembly module or component (no \\0asm header)")
    if kind == "module":
        return kind, [f"{m}.{f}" for m, f in _core_imports(data)]
    return kind, _component_imports(data)


# ---------------------------------------------------------------------------------------------
# imports → capabilities


def _interface(item: str) -> str:
    return item.split("@", 1)[0]


def need_of(kind: str, item: str) -> Need:
    """What one import needs: () base, a tuple of alternative groups, or None when no capability provides it."""
    if kind == "module":
        module, _, field = item.partition(".")
        if module in PREVIEW1_MODULES and field in PREVIEW1:
            return Need(item, PREVIEW1[field])
        return Need(item, None)
    iface = _interface(item)
    if iface in PREVIEW2_BASE:
        return Need(item, ())
    if iface in PREVIEW2_ALIASES:
        return Need(item, (PREVIEW2_ALIASES[iface],))
    if iface in PREVIEW2_CAPABILITIES:
        return Need(item, ((iface,),))
    return Need(item, None)


def check_imports(kind: str, items: list[str], granted: set[str]) -> list[Missing]:
    """Every capability the imports need that `granted` lacks (in a stable order), then the unprovidable ones."""
    missing: dict[tuple[str, ...], list[str]] = {}
    unknown: list[str] = []
    for item in items:
        need = need_of(kind, item)
        if need.needs is None:
            unknown.append(item)
            continue
        for alternatives in need.needs:
            if not granted.intersection(alternatives):
                missing.setdefault(alternatives, []).append(item)
    out = [Missing(alts[0], alts, tuple(dict.fromkeys(its))) for alts, its in missing.items()]
    out += [Missing(None, (), (u,)) for u in unknown]
    return out


def required_capabilities(kind: str, items: list[str]) -> tuple[list[str], list[str]]:
    """(capabilities a manifest must grant for these imports, in registry order; imports nothing provides)."""
    caps: list[str] = []
    unknown: list[str] = []
    for item in items:
        need = need_of(kind, item)
        if need.needs is None:
            unknown.append(item)
            continue
        for alternatives in need.needs:
            if not set(caps).intersection(alternatives):
                caps.append(alternatives[0])
    order = {c: i for i, c in enumerate(PREVIEW2_CAPABILITIES)}
    return sorted(set(caps), key=lambda c: order.get(c, len(order))), unknown


# The manifest line that grants each capability (paths and ports are placeholders to fill in).
SNIPPETS = {
    "wasi:cli/environment": "wasi:cli/environment: {vars: [NAME]}",
    "wasi:filesystem/preopens": "wasi:filesystem/preopens: [{path: /PATH, access: read}]",
    "wasi:sockets/tcp": "wasi:sockets/tcp: {connect: [PORT]}",
}


def snippet(capability: str) -> str:
    return SNIPPETS.get(capability, f"{capability}: {{}}")


def render_missing(missing: list[Missing], module: str, manifest: str) -> str:
    """The refusal text: each missing capability, who imports it, and the line to add under `imports:`."""
    lines = [f"{module} imports what {manifest} does not grant:"]
    for m in missing:
        shown = ", ".join(m.items[:4]) + (f" (+{len(m.items) - 4} more)" if len(m.items) > 4 else "")
        if m.capability is None:
            lines.append(f"  {shown}: no capability provides this import (the runtime cannot satisfy it)")
            continue
        other = f" (or {', '.join(m.alternatives[1:])})" if len(m.alternatives) > 1 else ""
        lines.append(f"  {m.capability}{other}, needed by {shown}")
        lines.append(f"      add under imports:  {snippet(m.capability)}")
    return "\n".join(lines)
