"""Landlock access rights, scopes and restrict_self flags, as data, ABI by ABI (include/uapi/linux/landlock.h)."""

from __future__ import annotations

# name -> (bit, first ABI that knows it)
FS_RIGHTS: dict[str, tuple[int, int]] = {
    "execute": (1 << 0, 1),
    "write_file": (1 << 1, 1),
    "read_file": (1 << 2, 1),
    "read_dir": (1 << 3, 1),
    "remove_dir": (1 << 4, 1),
    "remove_file": (1 << 5, 1),
    "make_char": (1 << 6, 1),
    "make_dir": (1 << 7, 1),
    "make_reg": (1 << 8, 1),
    "make_sock": (1 << 9, 1),
    "make_fifo": (1 << 10, 1),
    "make_block": (1 << 11, 1),
    "make_sym": (1 << 12, 1),
    "refer": (1 << 13, 2),
    "truncate": (1 << 14, 3),
    "ioctl_dev": (1 << 15, 5),
}

NET_RIGHTS: dict[str, tuple[int, int]] = {
    "bind_tcp": (1 << 0, 4),
    "connect_tcp": (1 << 1, 4),
}

SCOPES: dict[str, tuple[int, int]] = {
    "abstract_unix_socket": (1 << 0, 6),
    "signal": (1 << 1, 6),
}

# landlock_restrict_self() flags (ABI 7: audit logging control).
RESTRICT_FLAGS: dict[str, tuple[int, int]] = {
    "log_same_exec_off": (1 << 0, 7),
    "log_new_exec_on": (1 << 1, 7),
    "log_subdomains_off": (1 << 2, 7),
}

# Rights that only make sense on regular files; the kernel rejects others on a file rule.
FILE_ONLY_RIGHTS = ("execute", "write_file", "read_file", "truncate", "ioctl_dev")

NEWEST_ABI = 7
KERNEL_FOR_ABI = {1: "5.13", 2: "5.19", 3: "6.2", 4: "6.7", 5: "6.10", 6: "6.12", 7: "6.15"}


def rights_at(table: dict[str, tuple[int, int]], abi: int) -> list[str]:
    """Names of the rights in `table` that Landlock ABI `abi` knows, in bit order."""
    return [name for name, (_, since) in table.items() if since <= abi]


def mask(table: dict[str, tuple[int, int]], names: list[str] | tuple[str, ...]) -> int:
    """The bit mask for `names` (all must be in `table`)."""
    bits = 0
    for name in names:
        bits |= table[name][0]
    return bits
