"""Unit tests: syscall table invariants, and agreement with libseccomp wherever it knows a name."""

import re
from types import ModuleType

import pyseccomp
import pytest

from sandboxer.mechanisms.seccomp.tables import ARCHES, TABLES, aarch64, table, x86_64

LIBSECCOMP_ARCH = {"x86_64": pyseccomp.Arch.X86_64, "aarch64": pyseccomp.Arch.AARCH64}

# Numbers libseccomp 2.5 still names that Linux 6.18 dropped from the arch's table.
DROPPED_SINCE_LIBSECCOMP = {"aarch64": {42}, "x86_64": set()}  # nfsservctl, gone from arm64 in 6.11

SPOT_CHECKS = {
    "x86_64": {"read": 0, "openat": 257, "clone3": 435, "io_uring_setup": 425, "mseal": 462},
    "aarch64": {"openat": 56, "clone": 220, "clone3": 435, "fstat": 80, "newfstatat": 79},
}


@pytest.fixture(params=ARCHES)
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return table(request.param)


def test_arches_match_tables() -> None:
    """ARCHES is sorted and names exactly the architectures in TABLES."""
    assert list(ARCHES) == sorted(ARCHES)
    assert set(ARCHES) == set(TABLES)


def test_each_module_names_its_own_arch() -> None:
    """Each module's ARCH is the key it is registered under."""
    for arch, module in TABLES.items():
        assert module.ARCH == arch


def test_audit_arch_values() -> None:
    """AUDIT_ARCH matches the kernel's AUDIT_ARCH_X86_64 and AUDIT_ARCH_AARCH64."""
    assert x86_64.AUDIT_ARCH == 0xC000003E
    assert aarch64.AUDIT_ARCH == 0xC00000B7


def test_unknown_arch_raises_clear_key_error() -> None:
    """Asking for an unknown arch names it and lists the known ones."""
    with pytest.raises(KeyError) as info:
        table("riscv64")
    expected = "no syscall table for architecture 'riscv64' (known: aarch64, x86_64)"
    assert info.value.args[0] == expected


def test_numbers_are_unique(mod: ModuleType) -> None:
    """No two syscall names share a number."""
    numbers = list(mod.SYSCALLS.values())
    assert len(numbers) == len(set(numbers))


def test_ordered_by_number(mod: ModuleType) -> None:
    """The dict is written in ascending number order."""
    numbers = list(mod.SYSCALLS.values())
    assert numbers == sorted(numbers)


def test_names_look_like_kernel_names(mod: ModuleType) -> None:
    """Every name is a lower-case C identifier, as in the kernel's tables."""
    for name in mod.SYSCALLS:
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", name), name


def test_max_nr_is_highest_number(mod: ModuleType) -> None:
    """MAX_NR is the largest number in SYSCALLS (file_setattr, 469, in Linux 6.18)."""
    assert mod.MAX_NR == max(mod.SYSCALLS.values()) == 469


def test_agrees_with_libseccomp(mod: ModuleType) -> None:
    """Every name libseccomp knows on this arch resolves to our number; at least 300 are checked."""
    arch = LIBSECCOMP_ARCH[mod.ARCH]
    checked = 0
    mismatches = {}
    for name, nr in mod.SYSCALLS.items():
        resolved = pyseccomp.resolve_syscall(arch, name)
        if resolved < 0:  # newer than this libseccomp, or a pseudo-syscall on this arch
            continue
        checked += 1
        if resolved != nr:
            mismatches[name] = (nr, resolved)
    assert mismatches == {}
    assert checked >= 300


def test_no_number_libseccomp_knows_is_missing(mod: ModuleType) -> None:
    """Every number up to MAX_NR that libseccomp names is in our table under the same name."""
    arch = LIBSECCOMP_ARCH[mod.ARCH]
    by_number = {nr: name for name, nr in mod.SYSCALLS.items()}
    problems = {}
    for nr in range(mod.MAX_NR + 1):
        try:
            name = pyseccomp.resolve_syscall(arch, nr).decode()
        except ValueError:  # libseccomp has no syscall at this number
            continue
        if nr in DROPPED_SINCE_LIBSECCOMP[mod.ARCH]:
            assert nr not in by_number
            continue
        if by_number.get(nr) != name:
            problems[nr] = (by_number.get(nr), name)
    assert problems == {}


@pytest.mark.parametrize(
    ("arch", "name", "nr"),
    [(arch, name, nr) for arch, checks in SPOT_CHECKS.items() for name, nr in checks.items()],
)
def test_spot_checks(arch: str, name: str, nr: int) -> None:
    """Well-known numbers are where the kernel puts them."""
    assert table(arch).SYSCALLS[name] == nr


def test_newest_6_18_syscalls_present(mod: ModuleType) -> None:
    """The newest calls, cachestat (6.5) to file_setattr (6.17), are 451..469 on both arches."""
    newest = [
        "cachestat", "fchmodat2", "map_shadow_stack", "futex_wake", "futex_wait", "futex_requeue",
        "statmount", "listmount", "lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules",
        "mseal", "setxattrat", "getxattrat", "listxattrat", "removexattrat", "open_tree_attr",
        "file_getattr", "file_setattr",
    ]
    assert [mod.SYSCALLS[name] for name in newest] == list(range(451, 470))


def test_aarch64_has_no_legacy_calls() -> None:
    """arm64 uses the asm-generic table: no open, fork, stat and friends."""
    legacy = ("open", "fork", "vfork", "stat", "lstat", "pipe", "poll", "select", "dup2", "access")
    for name in legacy:
        assert name not in aarch64.SYSCALLS, name


def test_aarch64_keeps_its_opt_in_calls() -> None:
    """arm64 opts into renameat, getrlimit/setrlimit and memfd_secret (its Makefile.syscalls)."""
    assert aarch64.SYSCALLS["renameat"] == 38
    assert aarch64.SYSCALLS["getrlimit"] == 163
    assert aarch64.SYSCALLS["setrlimit"] == 164
    assert aarch64.SYSCALLS["memfd_secret"] == 447


def test_x86_64_excludes_x32_numbers() -> None:
    """The x32-only rows (512 and up) are not part of the native x86_64 table."""
    assert max(x86_64.SYSCALLS.values()) < 512
    assert x86_64.SYSCALLS["rt_sigaction"] == 13
    assert x86_64.SYSCALLS["uprobe"] == 336
