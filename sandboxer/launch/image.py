"""Launch stage: the launch image, a prepared run's decisions on this host as flat data for the native front.

The native `sandboxer` command (launch/front.c) starts a cached image without starting Python. The
Python launcher writes one after a run that needed nothing the front does not do: no warning, no
supervision (audit, complain mode), no cgroup, no wall time, no wasm host. The image says what the
child steps do (sequence.py), never why: every decision (compat, probes, refusals) was taken here,
and the front hands anything unusual back to Python. encode() is pure; store() writes through the
cache's trust rules (cache.py), which the front checks again before it reads.

Format (little-endian; FORMAT and the tags are mirrored in front.c):
    "SBXIMG01"  u32 euid  u32 egid  u32 flags  u32 null_stdio (bit n: fd n gets /dev/null)
    then records: u32 tag, u32 length, payload — strings without a terminator. T_INPUT: sha256 hex (64),
    u16 length of the real directory, the real directory, the path.
"""

from __future__ import annotations

import os
import struct

from sandboxer import __version__, cache
from sandboxer.paths import absolute
from sandboxer.mechanisms.landlock.apply import downgrade, ruleset_attr_size
from sandboxer.mechanisms.landlock.rights import FILE_ONLY_RIGHTS, FS_RIGHTS, NET_RIGHTS, RESTRICT_FLAGS, SCOPES, mask

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

    from sandboxer.launch.sequence import Prepared

FORMAT = 7  # 7: the typed name in the key too (the plan's "at" locations); 6: as cache.FORMAT 6; 5: inputs carry their real directory (cache.FORMAT 5); 4: scoped to the front's install
MAGIC = b"SBXIMG01"
T_INPUT, T_ENV_PASS, T_ENV_SET, T_EXEC_GRANT, T_LANDLOCK, T_LL_PATH, T_LL_PORT, T_RLIMIT, T_SECCOMP = range(1, 10)
F_NETNS, F_LOOPBACK, F_ROOTLESS, F_DROP_BOUNDING, F_EXEC_CHECKED = 1, 2, 4, 8, 16
_U64 = (1 << 64) - 1
PATH_MAX = 4096  # linux/limits.h: longer names cannot be opened as one string, and front.c's buffers hold this
ARCHES = ("x86_64", "aarch64")  # what front.c is built for; elsewhere no image is written


def image_path(manifest: str, manifest_sha: str, arch: str, front: str) -> str:
    """Where the image of `manifest` (this content, this sandboxer, this arch, the front in directory `front`)
    lives; front.c computes the same. Two installs of one version may carry different builtin: profiles."""
    text = f"{FORMAT}\0{__version__}\0{cache.BUILD_ID}\0{front}\0{arch}\0{absolute(manifest)}\0{manifest}\0{manifest_sha}"
    key = cache.sha256(os.fsencode(text)).hexdigest()[:32]  # a name's own bytes, as front.c hashes them
    return os.path.join(os.path.dirname(cache.cache_root()), "images", key)


def _record(tag: int, payload: bytes) -> bytes:
    return struct.pack("<II", tag, len(payload)) + payload


def encode(plan: Mapping[str, Any], bpf: bytes | None, child: Prepared, landlock_abi: int,
           inputs: list[tuple[str, str, str]]) -> bytes | None:
    """The image of a prepared run. `landlock_abi`: this kernel's (0 when no ruleset is applied);
    `inputs`: Policy.inputs (path, sha256, real directory of every file compiled, the manifest first), which the
    front checks on each use as cache.fresh() does. None when a path does not fit (the front reads PATH_MAX)."""
    if any(len(os.fsencode(p)) >= PATH_MAX or len(os.fsencode(d)) >= PATH_MAX for p, _, d in inputs):
        return None
    landlock = plan.get("landlock") or {}
    if 0 < landlock_abi < landlock.get("abi", 0):  # best-effort on an older kernel: what run._landlock applied
        landlock = downgrade(landlock, landlock_abi)[0]
    handles_exec = landlock_abi > 0 and "execute" in landlock.get("handled_fs", ())
    flags = ((F_NETNS if child.netns_mode != "host" else 0) | (F_LOOPBACK if child.netns_mode == "loopback" else 0)
             | (F_ROOTLESS if child.rootless else 0) | (F_DROP_BOUNDING if child.drop_bounding else 0)
             | (F_EXEC_CHECKED if handles_exec else 0))
    null_stdio = sum(1 << fd for fd in child.null_stdio)
    out = [MAGIC, struct.pack("<IIII", child.uid, child.gid, flags, null_stdio)]
    out += [_record(T_INPUT, digest.encode() + struct.pack("<H", len(os.fsencode(real_dir))) + os.fsencode(real_dir)
                    + os.fsencode(path)) for path, digest, real_dir in inputs]
    env = plan.get("environment") or {}
    out += [_record(T_ENV_PASS, os.fsencode(name)) for name in env.get("pass", ())]
    out += [_record(T_ENV_SET, os.fsencode(f"{k}={v}")) for k, v in (env.get("set") or {}).items()]
    if handles_exec:
        out += [_record(T_EXEC_GRANT, os.fsencode(rule["path"]))
                for rule in landlock.get("paths", ()) if "execute" in rule.get("access", ())]
    if landlock_abi > 0:
        handled_fs, handled_net = mask(FS_RIGHTS, landlock.get("handled_fs", [])), mask(NET_RIGHTS, landlock.get("handled_net", []))
        out.append(_record(T_LANDLOCK, struct.pack(
            "<IIQQQQI", landlock_abi, ruleset_attr_size(landlock["abi"]), handled_fs, handled_net,
            mask(SCOPES, landlock.get("scoped", [])), mask(FS_RIGHTS, FILE_ONLY_RIGHTS),
            mask(RESTRICT_FLAGS, landlock.get("restrict_flags", [])))))
        out += [_record(T_LL_PATH, struct.pack("<Q", mask(FS_RIGHTS, rule["access"])) + os.fsencode(rule["path"]))
                for rule in landlock.get("paths", ())]
        out += [_record(T_LL_PORT, struct.pack("<QQ", mask(NET_RIGHTS, rule["access"]), rule["port"]))
                for rule in landlock.get("ports", ()) if handled_net]
    out += [_record(T_RLIMIT, struct.pack("<IIQQ", res, 0, soft & _U64, hard & _U64))  # RLIM_INFINITY is -1 here
            for res, soft, hard in child.rlimits]
    if bpf:
        out.append(_record(T_SECCOMP, bytes(bpf)))
    return b"".join(out)


def store(path: str, data: bytes) -> None:
    """Write the image unless the same bytes are there (a stale one, say after a kernel upgrade, is replaced)."""
    if cache.read_trusted(path) != data:
        cache.write_atomic(path, data)
