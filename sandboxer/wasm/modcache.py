"""Compiled-module cache: wasmtime's serialized modules keyed by content sha256, runtime version and engine settings.

Layout: $XDG_CACHE_HOME/sandboxer/wasm/<key>/module.cwasm (default ~/.cache). One directory per
entry so that the confined host process can be given write access to its own entry only (Landlock
rules are path-beneath). A serialized module is native code that wasmtime maps and runs without
validation, so the cache is private (0700) and an entry is used only when it is a regular file owned
by us and not writable by group or others.
"""

from __future__ import annotations

import hashlib
import os
import stat

ENTRY_FILE = "module.cwasm"


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sandboxer", "wasm")


def wasmtime_dir() -> str | None:
    """The installed wasmtime package directory, found without importing it (~90 ms)."""
    import sys  # a sys.path scan: importlib.util alone costs ~5 ms

    for entry in sys.path:
        candidate = os.path.join(entry or ".", "wasmtime")
        if os.path.isfile(os.path.join(candidate, "__init__.py")):
            return os.path.abspath(candidate)
    return None


def runtime_version(package_dir: str | None = None) -> str:
    """wasmtime's version from its dist-info directory name (importlib.metadata costs ~50 ms)."""
    package_dir = package_dir or wasmtime_dir()
    if package_dir:
        site = os.path.dirname(package_dir)
        for name in os.listdir(site):
            if name.startswith("wasmtime-") and name.endswith(".dist-info"):
                return name[len("wasmtime-"):-len(".dist-info")]
    return "unknown"


def entry_key(sha256: str, runtime: str, settings: str) -> str:
    tag = hashlib.sha256(settings.encode()).hexdigest()[:12]
    return f"{sha256}-wasmtime{runtime}-{tag}"


def prepare_entry(sha256: str, settings: str, root: str | None = None) -> str:
    """The entry directory for this module (created 0700, parents too); raises OSError when impossible."""
    root = root or cache_root()
    os.makedirs(root, mode=0o700, exist_ok=True)
    d = os.path.join(root, entry_key(sha256, runtime_version(), settings))
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def usable(path: str) -> bool:
    """A cache file we may map: regular, ours, not group/other-writable."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and st.st_size > 0)


def store(entry_dir: str, data: bytes) -> None:
    """Write atomically (temporary name, then rename) so a concurrent reader never maps half a file."""
    tmp = os.path.join(entry_dir, f".{ENTRY_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(entry_dir, ENTRY_FILE))


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
