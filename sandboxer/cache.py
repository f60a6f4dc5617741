"""The compiled-plan cache: a repeated `sandboxer run` of the same manifest does no YAML or compile work.

Key: sandboxer version, target, and the manifest's path and content hash. Each entry records the
hash of every file the manifest pulled in through `extends:`; a hit re-hashes those (cheap) so a
changed base profile is never served stale.
"""

from __future__ import annotations

import errno
import marshal  # built in: no import cost, and loads a plan ~10x faster than json
import os

try:  # the builtin module; hashlib would first load OpenSSL (~2.5 ms on every launch)
    from _sha256 import sha256  # Python 3.11
except ImportError:  # pragma: no cover - 3.12 merged it into _sha2
    try:
        from _sha2 import sha256
    except ImportError:
        from hashlib import sha256

from . import __version__
from .paths import absolute

ENTRY_FILE = "plan.marshal"  # (inputs, plan, bpf) in one file: one open, one read
# 3: keyed by the manifest's path as typed (made absolute, symlinks kept: relative `extends:` resolve from
# it), inputs recorded the same way and hashed from the bytes the compiler read. (1 re-hashed a relative
# input from the current directory; 2's real paths missed a repointed symlink and merged the entries of
# a manifest and a symlink to it, whose relative `extends:` name different files.)
# 4: the install is part of the key (two installs of one version may carry different builtin: profiles).
# 5: every name the loader opened is an input, the manifest included, with the real directory its
#    relative `extends:` resolved from (a directory symlink repointed under an unchanged file is a miss).
# 6: the loader merges by recorded facts only (bytes, and the real directory of relative extends:).
# 7: the name as typed is in the key too: the plan's manifest locations ("at") are written with it.
FORMAT = 7
try:  # written by setup.py into an installed package: a digest of its sources
    from ._build import BUILD_ID
except ImportError:  # a source tree: the version and the install directory stand for the code
    BUILD_ID = "source"
# The installed package, as a real path (a repointed `current -> vN` link is another install): builtin:
# profiles and the compiler come from here, so a plan is this install's.
INSTALL = os.path.dirname(os.path.realpath(__file__))


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sandboxer", "plans")


# Cached plans, filters and compiled modules are policy (and, for wasm, native code that is run):
# a cache anybody else could write to is not used. The rules, checked on every use:
# - every directory from the entry's up to / is owned by us or root, and is not writable by group or
#   others unless it is sticky (/tmp): nobody else can swap an entry or plant a symlink in its path;
# - an entry is a regular file with one link, owned by us, not group/other-writable, opened without
#   following a symlink;
# - a new entry is written to a fresh O_EXCL|O_NOFOLLOW temporary file and renamed into place.
_trusted_dirs: dict[str, bool] = {}  # per process: one launch checks each directory once


def trusted_dir(path: str) -> bool:
    """Does nobody but us (and root) control `path` and every directory above it?"""
    real = os.path.realpath(path)
    if _trusted_dirs.get(real):
        return True  # only a positive answer is remembered: a directory may be created meanwhile
    uid, d, ok = os.geteuid(), real, True
    while ok:
        try:
            st = os.lstat(d)
        except OSError:
            ok = False
            break
        sticky_shared = st.st_mode & 0o1000 and d != real
        ok = stat_isdir(st.st_mode) and st.st_uid in (0, uid) and (not st.st_mode & 0o022 or sticky_shared)
        if d == "/":
            break
        d = os.path.dirname(d)
    if ok:
        _trusted_dirs[real] = True
    return bool(ok)


def stat_isdir(mode: int) -> bool:
    return mode & 0o170000 == 0o040000


def _private_makedirs(path: str) -> None:
    """mkdir -p with 0700 for every directory it creates (os.makedirs gives the parents umask's mode)."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass


_warned: set[str] = set()


def _untrusted(directory: str) -> None:
    """Say once per directory that the cache is not used there (it is policy: a silent miss would hide it)."""
    if directory not in _warned:
        _warned.add(directory)
        import sys

        sys.stderr.write(f"sandboxer: note: not using the cache in {directory}: it or a directory above it is "
                         "writable by others (or not ours); every run compiles again\n")


def read_trusted(path: str) -> bytes | None:
    """The entry's bytes if the rules above hold for it, else None (the caller rebuilds it)."""
    directory = os.path.realpath(os.path.dirname(path))
    if not os.path.isdir(directory):
        return None
    if not trusted_dir(directory):
        _untrusted(directory)
        return None
    path = os.path.join(directory, os.path.basename(path))  # open what was checked, not a path to it
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000 != 0o100000 or st.st_nlink != 1 or st.st_uid != os.geteuid()
                or st.st_mode & 0o022 or st.st_size == 0):
            return None
        chunks = []
        while chunk := os.read(fd, max(st.st_size, 1 << 16)):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes) -> bool:
    """Best effort (a cache that cannot be written only costs speed): False when nothing was written."""
    try:
        _private_makedirs(os.path.dirname(path))
    except OSError:
        return False
    parent = os.path.realpath(os.path.dirname(path))
    path = os.path.join(parent, os.path.basename(path))  # write where was checked, not through a path to it
    tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        if not trusted_dir(parent):
            _untrusted(parent)
            return False
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


def read_regular(path: str) -> bytes:
    """The bytes of a regular file, opened without blocking: a FIFO or a device is refused (OSError), not read.

    The manifest loader reads with this and the cache re-checks with it: a check never looser than a compile.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if os.fstat(fd).st_mode & 0o170000 != 0o100000:
            raise OSError(errno.EINVAL, "not a regular file", path)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _sha256(path: str) -> str:
    return sha256(read_regular(path)).hexdigest()


def entry_key(manifest: str, manifest_sha: str, target: tuple[str, int]) -> str:
    text = f"{FORMAT}\0{__version__}\0{BUILD_ID}\0{INSTALL}\0{marshal.version}\0{target[0]}\0{target[1]}\0{absolute(manifest)}\0{manifest}\0{manifest_sha}"
    return sha256(os.fsencode(text)).hexdigest()[:32]  # a name's own bytes, as front.c hashes them


def fresh(inputs: list[tuple[str, str, str]]) -> bool:
    """Does every input still hold: the same bytes through the same name, resolved from the same real directory?"""
    try:
        return all(_sha256(path) == digest and os.path.realpath(os.path.dirname(path)) == real_dir
                   for path, digest, real_dir in inputs)
    except OSError:
        return False


def lookup(manifest: str, target: tuple[str, int]) -> tuple[dict, bytes, str, list[tuple[str, str, str]]] | None:
    """(plan, bpf, manifest sha256, inputs) when a fresh entry exists, else None (inputs: Policy.inputs)."""
    try:
        sha = _sha256(manifest)
    except OSError:
        return None  # compiling says why
    path = os.path.join(cache_root(), entry_key(manifest, sha, target))
    data = read_trusted(path)
    if data is None:
        return None
    try:
        inputs, plan, bpf = marshal.loads(data)
        if not fresh(inputs):
            return None
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return plan, bpf, sha, [tuple(i) for i in inputs]  # type: ignore[misc]


def store(manifest: str, target: tuple[str, int], inputs: list[tuple[str, str, str]], plan: dict, bpf: bytes
          ) -> list[tuple[str, str, str]]:
    """Write an entry atomically (best effort: a read-only cache only costs speed); its inputs.

    inputs: Policy.inputs, the manifest first: each name by its absolute path with symlinks kept (re-hashed
    through it, so a repointed link is a miss), the sha256 of the bytes compiled, its real directory.
    """
    path = os.path.join(cache_root(), entry_key(manifest, inputs[0][1], target))
    write_atomic(path, marshal.dumps((inputs, plan, bpf)))
    return inputs
