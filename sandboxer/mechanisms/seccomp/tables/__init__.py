"""Syscall number tables for Linux 6.18, one data module per architecture."""

from types import ModuleType

from sandboxer.mechanisms.seccomp.tables import aarch64, x86_64

TABLES: dict[str, ModuleType] = {
    "x86_64": x86_64,
    "aarch64": aarch64,
}

ARCHES: tuple[str, ...] = ("aarch64", "x86_64")


def table(arch: str) -> ModuleType:
    """Return the table module (ARCH, AUDIT_ARCH, SYSCALLS, MAX_NR) for `arch`."""
    try:
        return TABLES[arch]
    except KeyError:
        known = ", ".join(ARCHES)
        raise KeyError(f"no syscall table for architecture {arch!r} (known: {known})") from None
