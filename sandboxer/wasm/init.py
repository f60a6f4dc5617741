"""`sandboxer init --from-wasm MODULE` / `--from-wit WORLD.wit`: a manifest skeleton with one entry per import.

The skeleton passes `sandboxer check` as written and grants nothing that needs a decision: path and
port lists start empty, with comments saying what to fill in.
"""

from __future__ import annotations

import os
import re

from ..errors import UsageError
from .imports import PREVIEW2_CAPABILITIES, WasmFormatError, read_imports, required_capabilities

# What `include wasi:cli/imports` (the standard command world's imports) brings in, WASI 0.2.
CLI_IMPORTS_WORLD = (
    "wasi:cli/environment", "wasi:cli/exit", "wasi:cli/stdin", "wasi:cli/stdout", "wasi:cli/stderr",
    "wasi:cli/terminal-input", "wasi:cli/terminal-output", "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout", "wasi:cli/terminal-stderr", "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock", "wasi:filesystem/types", "wasi:filesystem/preopens", "wasi:io/error",
    "wasi:io/poll", "wasi:io/streams", "wasi:random/random", "wasi:random/insecure",
    "wasi:random/insecure-seed", "wasi:sockets/network", "wasi:sockets/instance-network",
    "wasi:sockets/udp", "wasi:sockets/udp-create-socket", "wasi:sockets/tcp", "wasi:sockets/tcp-create-socket",
    "wasi:sockets/ip-name-lookup",
)

ENTRIES = {
    "wasi:cli/environment": ["wasi:cli/environment: {vars: []}  # FILL IN: names of the variables to pass, e.g. [LANG]"],
    "wasi:filesystem/preopens": [
        "wasi:filesystem/preopens: []  # FILL IN: the directories the module opens, e.g.",
        "  #   - {path: /srv/in, access: read, why: input}",
        "  #   - {path: /srv/out, access: read+write, why: results}",
    ],
    "wasi:sockets/tcp": ["wasi:sockets/tcp: {connect: [], bind: []}  # FILL IN: the TCP ports, e.g. connect: [443]"],
}
WHY = {
    "wasi:cli/stdin": "read standard input",
    "wasi:cli/stdout": "write standard output",
    "wasi:cli/stderr": "write standard error",
    "wasi:clocks/monotonic-clock": "timers and sleeping",
    "wasi:clocks/wall-clock": "the time of day",
    "wasi:random/random": "secure random bytes",
    "wasi:random/insecure": "non-secure random bytes",
    "wasi:sockets/udp": "UDP sockets (any port: Landlock cannot filter UDP)",
    "wasi:sockets/ip-name-lookup": "resolve host names",
}


def _name(path: str) -> str:
    stem = os.path.basename(path).split(".")[0].lower()
    return re.sub(r"[^a-z0-9-]+", "-", stem).strip("-") or "module"


def render(name: str, source: str, what: str, caps: list[str], notes: list[str]) -> str:
    lines = [
        f"# Written by `sandboxer init {source}`: one entry per capability {what} imports.",
        "# Fill in each FILL IN (paths, ports, variable names), then: sandboxer check THIS_FILE",
        *(f"# note: {n}" for n in notes),
        "sandboxer: 1",
        f"name: {name}",
        f"description: Run {what} under sandboxer (generated skeleton).",
    ]
    if not caps:
        lines.append("imports: {}  # the module imports no capability")
    else:
        lines.append("imports:")
        for cap in caps:
            entry = ENTRIES.get(cap) or [f"{cap}: {{}}  # {WHY.get(cap, '')}".rstrip(" #")]
            lines += [f"  {e}" for e in entry]
    lines.append("limits: {memory: 64Mi, wall-time: 30s}  # the module's linear memory; stopped after 30 s")
    return "\n".join(lines) + "\n"


def from_wasm(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
        kind, items = read_imports(data)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except WasmFormatError as e:
        raise UsageError(f"{path}: {e}") from None
    caps, unknown = required_capabilities(kind, items)
    notes = []
    if kind == "module":
        fields = {i.partition(".")[2] for i in items}
        # Preview 1 writes every stream with fd_write: the imports cannot say which one it uses.
        stdio = [c for c, fn in (("wasi:cli/stdin", "fd_read"), ("wasi:cli/stdout", "fd_write"),
                                 ("wasi:cli/stderr", "fd_write")) if fn in fields]
        if stdio:
            notes.append("a preview 1 module reaches stdio through fd_read/fd_write: keep only the streams it uses")
        caps = [*stdio, *caps]
    if unknown:
        notes.append(f"no capability provides: {', '.join(unknown)} (the module cannot run under sandboxer)")
    what = f"{os.path.basename(path)} (WASI {'preview 1 module' if kind == 'module' else 'preview 2 component'})"
    return render(_name(path), f"--from-wasm {path}", what, caps, notes)


_IMPORT = re.compile(r"^\s*(import|include)\s+([a-z0-9-]+:[a-z0-9-]+/[a-z0-9-]+)(@[^;\s]*)?\s*;", re.M)
_WORLD = re.compile(r"^\s*world\s+([a-z0-9-]+)\s*\{", re.M)


def from_wit(path: str) -> str:
    """From the first world in a WIT file: its `import iface;` lines and `include wasi:cli/imports;`."""
    try:
        with open(path, encoding="utf-8") as f:
            text = re.sub(r"//[^\n]*", "", f.read())
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    world = _WORLD.search(text)
    if world is None:
        raise UsageError(f"{path}: no `world NAME {{ … }}` in this WIT file")
    depth, i = 1, world.end()
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    body = text[world.end():i]
    items: list[str] = []
    for verb, iface, _ in _IMPORT.findall(body):
        items += list(CLI_IMPORTS_WORLD) if verb == "include" and iface in ("wasi:cli/imports", "wasi:cli/command") \
            else [iface] if verb == "import" else []
    caps, unknown = required_capabilities("component", items)
    # WIT names each stream on its own: no guessing needed, unlike preview 1.
    order = {c: n for n, c in enumerate(PREVIEW2_CAPABILITIES)}
    caps.sort(key=lambda c: order.get(c, len(order)))
    notes = [f"no capability provides: {', '.join(unknown)}"] if unknown else []
    return render(world.group(1), f"--from-wit {path}", f"world {world.group(1)} of {os.path.basename(path)}",
                  caps, notes)


def write_skeleton(wasm_path, wit_path, out) -> None:
    """The `init` command: exactly one source; stdout, or a new file at `out`."""
    import sys

    if (wasm_path is None) == (wit_path is None):
        raise UsageError("give exactly one of --from-wasm MODULE or --from-wit WORLD.wit")
    text = from_wasm(str(wasm_path)) if wasm_path is not None else from_wit(str(wit_path))
    if out is None:
        sys.stdout.write(text)
        return
    try:
        with open(out, "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise UsageError(f"{out} exists: not overwriting it") from None
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror}") from None
    sys.stderr.write(f"wrote {out}; fill in each FILL IN, then: sandboxer check {out}\n")
