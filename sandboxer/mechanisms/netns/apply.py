"""Apply stage: put the child in the network namespace the plan asks for (none, loopback or host).

Runs in the child between fork and execve, so it only calls the prebuilt ctypes wrappers of
sandboxer.launch.kernel and os.open/os.write. Rootless, the private namespace is owned by a new user
namespace in which the user is mapped to itself ("U U 1"), so it keeps its own uid and gains
capabilities only inside that namespace (dropped again before exec). A rootless supervised run
already has its user namespace (created by clone3 with the PID namespace, maps written by
map_own_ids()): then only the network namespace is new, or nothing at all for "host".
"""

from __future__ import annotations

import os

from sandboxer.launch import kernel

MODES = ("none", "loopback", "host")


def _write_proc(path: str, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        raise OSError(e.errno, e.strerror, f"write {path}") from None


def bring_up_loopback() -> None:
    """Set `lo` up in the current network namespace (plain SIOCGIFFLAGS/SIOCSIFFLAGS ioctls, ~1 ms)."""
    kernel.loopback_up()


def map_own_ids(uid: int, gid: int) -> None:
    """In a user namespace just created (unshare or clone3 CLONE_NEWUSER): map uid and gid to themselves.

    user_namespaces(7): an unprivileged process may map only its own ids, and must deny setgroups(2)
    before writing gid_map (Linux 3.19).
    """
    _write_proc("/proc/self/setgroups", b"deny")
    _write_proc("/proc/self/uid_map", b"%d %d 1" % (uid, uid))
    _write_proc("/proc/self/gid_map", b"%d %d 1" % (gid, gid))


def enter_netns(mode: str, rootless: bool, uid: int, gid: int, *, own_userns: bool = False) -> None:
    """Enter a private network namespace for "none" and "loopback" (with lo up); "host" changes nothing.

    Rootless, the network namespace needs a user namespace: a new one is created here, unless the
    process already has its own (`own_userns`: clone3 made it, map_own_ids() mapped it), whose
    capabilities suffice for CLONE_NEWNET. Raises OSError(errno, strerror, call) naming the failing call.
    """
    if mode == "host":
        return
    if rootless and not own_userns:
        kernel.unshare(kernel.CLONE_NEWUSER | kernel.CLONE_NEWNET, call="unshare(CLONE_NEWUSER|CLONE_NEWNET)")
        map_own_ids(uid, gid)
    else:
        kernel.unshare(kernel.CLONE_NEWNET, call="unshare(CLONE_NEWNET)")
    if mode == "loopback":
        bring_up_loopback()
