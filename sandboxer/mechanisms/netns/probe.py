"""Probe stage, read-only: can this process get a private network namespace, and does it need a user namespace?"""

from __future__ import annotations

import os

# (file, value that disables, why) — sysctls that stop unprivileged user namespaces.
_USERNS_SWITCHES = (
    ("/proc/sys/kernel/unprivileged_userns_clone", "0",
     "unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone=0; Debian/Ubuntu patch)"),
    ("/proc/sys/user/max_user_namespaces", "0",
     "user namespaces are disabled (sysctl user.max_user_namespaces=0)"),
    ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
     "AppArmor restricts unprivileged user namespaces (sysctl kernel.apparmor_restrict_unprivileged_userns=1):"
     " the namespace would have no capabilities to bring up lo"),
)
_NETNS_SWITCH = ("/proc/sys/user/max_net_namespaces", "0",
                 "network namespaces are disabled (sysctl user.max_net_namespaces=0)")


class NetnsHost:
    """Whether a private network namespace is available to this process, and how it is made.

    `via_userns`: the process is not root, so the namespace comes from unshare(CLONE_NEWUSER |
    CLONE_NEWNET) with the user mapped to itself. `reason` says why `available` is False.
    """

    def __init__(self, available: bool, via_userns: bool, reason: str | None = None) -> None:
        self.available = available
        self.via_userns = via_userns
        self.reason = reason


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None  # absent on this kernel: the switch does not exist


def probe_netns(euid: int | None = None) -> NetnsHost:
    """Read the sysctls that decide whether unshare(CLONE_NEWNET [| CLONE_NEWUSER]) can succeed."""
    rootless = (os.geteuid() if euid is None else euid) != 0
    switches = (_NETNS_SWITCH, *_USERNS_SWITCHES) if rootless else (_NETNS_SWITCH,)
    for path, off, why in switches:
        if _read(path) == off:
            return NetnsHost(False, rootless, why)
    if rootless and not os.path.exists("/proc/self/ns/user"):
        return NetnsHost(False, True, "the kernel was built without CONFIG_USER_NS")
    if not os.path.exists("/proc/self/ns/net"):
        return NetnsHost(False, rootless, "the kernel was built without CONFIG_NET_NS")
    return NetnsHost(True, rootless)
