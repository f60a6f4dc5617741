"""The compiled-plan cache: a repeated `sandboxer run` of the same manifest does no YAML or compile work.

Key: sandboxer version, target, and the manifest's path and content hash. Each entry records the
hash of every file the manifest pulled in through `extends:`; a hit re-hashes those (cheap) so a
changed base profile is never served stale.
"""

from __future__ import annotations

import marshal  # built in: no import cost, and loads a plan ~10x faster than json
import os

try:  # the builtin module; hashlib would first load OpenSSL (~2.5 ms on every launch)
    from _sha256 import sha256
except ImportError:  # pragma: no cover - interpreters without the builtin
    from hashlib import sha256

from . import __version__

ENTRY_FILE = "plan.marshal"  # (inputs, plan, bpf) in one file: one open, one read


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sandboxer", "plans")


def read_trusted(path: str) -> bytes | None:
    """The file's bytes if it is ours and nobody else can write it (a cached filter is policy), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes) -> None:
    """Best effort (a read-only cache only costs speed): write a temporary file, rename it into place."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return sha256(f.read()).hexdigest()


def entry_key(manifest: str, manifest_sha: str, target: tuple[str, int]) -> str:
    text = f"{__version__}\0{marshal.version}\0{target[0]}\0{target[1]}\0{os.path.realpath(manifest)}\0{manifest_sha}"
    return sha256(text.encode()).hexdigest()[:32]


def lookup(manifest: str, target: tuple[str, int]) -> tuple[dict, bytes, str] | None:
    """(plan, bpf, manifest sha256) when a fresh entry exists, else None."""
    sha = _sha256(manifest)
    path = os.path.join(cache_root(), entry_key(manifest, sha, target))
    data = read_trusted(path)
    if data is None:
        return None
    try:
        inputs, plan, bpf = marshal.loads(data)
        if any(_sha256(p) != digest for p, digest in inputs):
            return None
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return plan, bpf, sha


def store(manifest: str, target: tuple[str, int], sources: list[str], plan: dict, bpf: bytes) -> None:
    """Write an entry atomically (best effort: a read-only cache only costs speed)."""
    sha = _sha256(manifest)
    path = os.path.join(cache_root(), entry_key(manifest, sha, target))
    inputs = [(s, _sha256(s)) for s in sources[1:]]
    write_atomic(path, marshal.dumps((inputs, plan, bpf)))
