"""Compiled-module cache: wasmtime's serialized modules keyed by content sha256, runtime version and engine settings.

Layout: $XDG_CACHE_HOME/sandboxer/wasm/<key>/module.cwasm (default ~/.cache), and the derived host
plans (sandboxer.wasm.host_plan) in $XDG_CACHE_HOME/sandboxer/wasm-host/<key>. One directory per
entry so that the confined host process can be given write access to its own entry only (Landlock
rules are path-beneath). A serialized module is native code that wasmtime maps and runs without
validation, so the cache is private (0700) and an entry is used only when it is a regular file owned
by us and not writable by group or others.
"""

from __future__ import annotations

import os

from ..cache import sha256 as _sha256  # the builtin (hashlib would load OpenSSL, ~2.5 ms a run)

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
    tag = _sha256(settings.encode()).hexdigest()[:12]
    return f"{sha256}-wasmtime{runtime}-{tag}"


def prepare_entry(sha256: str, settings: str, root: str | None = None, runtime: str | None = None) -> str:
    """The entry directory for this module (created 0700, parents too); raises OSError when impossible."""
    from ..cache import _private_makedirs

    root = root or cache_root()
    d = os.path.join(root, entry_key(sha256, runtime or runtime_version(), settings))
    _private_makedirs(d)
    return d


def usable(path: str) -> bool:
    """A cache file we may map (sandboxer.cache's rules: ours, regular, one link, trusted directories),
    checked without reading it."""
    from ..cache import trusted_dir

    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_mode & 0o170000 == 0o100000 and st.st_nlink == 1 and st.st_uid == os.geteuid()
            and not st.st_mode & 0o022 and st.st_size > 0 and trusted_dir(os.path.dirname(path)))


def read_entry(path: str) -> bytes | None:
    """The cache file's bytes when the cache rules hold (sandboxer.cache.read_trusted), else None."""
    from ..cache import read_trusted

    return read_trusted(path)


def store(entry_dir: str, data: bytes) -> None:
    """Write atomically (temporary name, then rename) so a concurrent reader never maps half a file."""
    write_atomic(os.path.join(entry_dir, ENTRY_FILE), data)


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` (0600) through an O_EXCL|O_NOFOLLOW temporary file and a rename;
    OSError when the cache directory is not ours alone (sandboxer.cache.write_atomic)."""
    from ..cache import write_atomic as _write

    if not _write(path, data):
        raise OSError(f"cannot write the cache entry {path} (unwritable, or a directory others control)")


def sha256_hex(data: bytes) -> str:
    return _sha256(data).hexdigest()



def sha256_file(path: str) -> str:
    h = _sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
