"""Probe stage, read-only: which Landlock ABI (and which errata fixes) the running kernel offers."""

from __future__ import annotations

import errno
import os

from sandboxer.launch import libc  # ctypes without its import cost: the run path probes on every launch

_SYS_LANDLOCK_CREATE_RULESET = 444  # same number on x86_64 and aarch64 (asm-generic table)
_CREATE_RULESET_VERSION = 1 << 0
_CREATE_RULESET_ERRATA = 1 << 1  # Linux 6.15 (ABI 7); older kernels answer EINVAL

_syscall = libc.function("syscall", libc.c_long, libc.c_long, libc.c_void_p, libc.c_size_t, libc.c_uint32)

# Why the version query failed, as bubblewrap would say it: the errno plus a kernel-config hint.
_HINTS = {
    errno.ENOSYS: "the kernel was built without CONFIG_SECURITY_LANDLOCK (needs Linux 5.13+)",
    errno.EOPNOTSUPP: "Landlock is built in but disabled at boot: add 'landlock' to the lsm= parameter",
}


class LandlockHost:
    """What this kernel offers: `abi` 0 means no Landlock, and `reason` then says why.

    `errata` is the bitmask of Landlock errata fixed in this kernel (0 when it cannot say).
    """

    def __init__(self, abi: int, reason: str | None = None, errata: int = 0) -> None:
        self.abi = abi
        self.reason = reason
        self.errata = errata


def _query(flags: int) -> tuple[int, int]:
    """(result, errno) of landlock_create_ruleset(NULL, 0, flags)."""
    ret = _syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, flags)
    return (ret, 0) if ret >= 0 else (-1, libc.get_errno())


def probe_landlock() -> LandlockHost:
    """Ask the kernel for its Landlock ABI version and errata, keeping the errno when it has none."""
    abi, err = _query(_CREATE_RULESET_VERSION)
    if abi < 0:
        name = errno.errorcode.get(err, str(err))
        hint = _HINTS.get(err, os.strerror(err))
        return LandlockHost(0, f"landlock_create_ruleset(VERSION) failed: {name}: {hint}")
    errata, _ = _query(_CREATE_RULESET_ERRATA)
    return LandlockHost(abi, None, max(errata, 0))


def probe_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is unsupported or disabled."""
    return probe_landlock().abi
