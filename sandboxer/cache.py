"""The compiled-plan cache: a repeated `sandboxer run` of the same manifest does no YAML or compile work.

Key: sandboxer version, target, and the manifest's path and content hash. Each entry records the
hash of every file the manifest pulled in through `extends:`; a hit re-hashes those (cheap) so a
changed base profile is never served stale.
"""

from __future__ import annotations

import hashlib
import json
import os

from . import __version__

PLAN_FILE, BPF_FILE, INPUTS_FILE = "plan.json", "seccomp.bpf", "inputs.json"


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sandboxer", "plans")


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def entry_key(manifest: str, manifest_sha: str, target: tuple[str, int]) -> str:
    text = f"{__version__}\0{target[0]}\0{target[1]}\0{os.path.realpath(manifest)}\0{manifest_sha}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def lookup(manifest: str, target: tuple[str, int]) -> tuple[dict, bytes, str] | None:
    """(plan, bpf, manifest sha256) when a fresh entry exists, else None."""
    sha = _sha256(manifest)
    entry = os.path.join(cache_root(), entry_key(manifest, sha, target))
    try:
        with open(os.path.join(entry, INPUTS_FILE)) as f:
            inputs = json.load(f)
        if any(_sha256(path) != digest for path, digest in inputs):
            return None
        with open(os.path.join(entry, PLAN_FILE), "rb") as f:
            plan = json.load(f)
        with open(os.path.join(entry, BPF_FILE), "rb") as f:
            bpf = f.read()
    except (OSError, ValueError):
        return None
    return plan, bpf, sha


def store(manifest: str, target: tuple[str, int], sources: list[str], files: dict[str, bytes]) -> None:
    """Write an entry atomically (best effort: a read-only cache only costs speed)."""
    import tempfile  # only on a miss: the hit path stays lean

    sha = _sha256(manifest)
    entry = os.path.join(cache_root(), entry_key(manifest, sha, target))
    try:
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(entry))
        for name, data in {**files, INPUTS_FILE: json.dumps([[s, _sha256(s)] for s in sources[1:]]).encode()}.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        try:
            os.rename(tmp, entry)
        except OSError:  # another launcher won the race: theirs is as good
            for name in os.listdir(tmp):
                os.unlink(os.path.join(tmp, name))
            os.rmdir(tmp)
    except OSError:
        pass
