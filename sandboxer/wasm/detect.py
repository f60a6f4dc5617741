"""Is this file WebAssembly, and which kind: a core module (WASI preview 1) or a component (WASI preview 2)."""

from __future__ import annotations

MAGIC = b"\0asm"
CORE_VERSION = b"\x01\x00\x00\x00"  # version 1, layer 0
COMPONENT_LAYER = b"\x01\x00"  # bytes 6-7 of a component's preamble: layer 1 (bytes 4-5: the pre-release version)


def kind_of(head: bytes) -> str | None:
    """'module', 'component', or None when the bytes do not start a WebAssembly binary."""
    if len(head) < 8 or head[:4] != MAGIC:
        return None
    if head[4:8] == CORE_VERSION:
        return "module"
    if head[6:8] == COMPONENT_LAYER:
        return "component"
    return None


def sniff(path: str) -> str | None:
    """kind_of() for a file's first 8 bytes; None for anything unreadable or not WebAssembly."""
    try:
        with open(path, "rb") as f:
            return kind_of(f.read(8))
    except OSError:
        return None
