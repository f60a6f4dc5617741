"""Reference (links libseccomp): build libseccomp filters from OCI seccomp profiles and export them as BPF or PFC.

The only module in sandboxer that imports pyseccomp. sandboxer generates its own BPF; this module
exists to compare against what runc/crun would load for the same OCI profile, and to cross-check
the emulator against an independent BPF generator. Nothing here touches the kernel: filters are
built and exported, never loaded.
"""

from __future__ import annotations

import errno
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pyseccomp

__all__ = [
    "ARCHES",
    "DOCKER_DEFAULT_CAPS",
    "OciProfileError",
    "build_from_oci",
    "export_bpf",
    "export_pfc",
    "syscall_number",
    "syscall_table",
]

# sandboxer arch name -> (libseccomp arch token, the name an OCI profile's includes/excludes use)
ARCHES: dict[str, tuple[int, str]] = {
    "x86_64": (pyseccomp.Arch.X86_64, "amd64"),
    "x86": (pyseccomp.Arch.X86, "x86"),
    "x32": (pyseccomp.Arch.X32, "x32"),
    "aarch64": (pyseccomp.Arch.AARCH64, "arm64"),
    "arm": (pyseccomp.Arch.ARM, "arm"),
}

# The capabilities a container gets from Docker/moby by default (oci/caps/defaults.go); entries of the
# profile that `include` another capability, or `exclude` one of these, do not apply to it.
DOCKER_DEFAULT_CAPS = frozenset({
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
    "CAP_SETUID", "CAP_SYS_CHROOT",
})

_OPS = {
    "SCMP_CMP_NE": pyseccomp.NE,
    "SCMP_CMP_LT": pyseccomp.LT,
    "SCMP_CMP_LE": pyseccomp.LE,
    "SCMP_CMP_EQ": pyseccomp.EQ,
    "SCMP_CMP_GE": pyseccomp.GE,
    "SCMP_CMP_GT": pyseccomp.GT,
    "SCMP_CMP_MASKED_EQ": pyseccomp.MASKED_EQ,
}


class OciProfileError(ValueError):
    """The OCI profile cannot be turned into a libseccomp filter; the message names the entry."""


def _action(name: str, errno_ret: int | None, where: str) -> int:
    # runc's getAction(): ERRNO and TRACE carry errnoRet, EPERM when the profile gives none.
    data = errno.EPERM if errno_ret is None else errno_ret
    simple = {
        "SCMP_ACT_ALLOW": pyseccomp.ALLOW,
        "SCMP_ACT_KILL": pyseccomp.KILL_THREAD,
        "SCMP_ACT_KILL_THREAD": pyseccomp.KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": pyseccomp.KILL_PROCESS,
        "SCMP_ACT_TRAP": pyseccomp.TRAP,
        "SCMP_ACT_LOG": pyseccomp.LOG,
        "SCMP_ACT_NOTIFY": pyseccomp.NOTIFY,
    }
    if name in simple:
        return simple[name]
    if name == "SCMP_ACT_ERRNO":
        return pyseccomp.ERRNO(data)
    if name == "SCMP_ACT_TRACE":
        return pyseccomp.TRACE(data)
    raise OciProfileError(f"{where}: unknown action {name!r}")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2])


def _applies(
    entry: Mapping[str, Any], goarch: str, caps: frozenset[str], kernel: tuple[int, int] | None
) -> bool:
    # moby's profiles/seccomp setupSeccomp(): excludes first, then includes; every listed cap must be held.
    # kernel=None stands for a kernel newer than any minKernel in the profile.
    inc = entry.get("includes") or {}
    exc = entry.get("excludes") or {}
    if exc.get("arches") and goarch in exc["arches"]:
        return False
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if exc.get("caps") and any(c in caps for c in exc["caps"]):
        return False
    if inc.get("caps") and not all(c in caps for c in inc["caps"]):
        return False
    if exc.get("minKernel") and (kernel is None or kernel >= _version(exc["minKernel"])):
        return False
    if inc.get("minKernel") and kernel is not None and kernel < _version(inc["minKernel"]):
        return False
    return True


def _conditions(entry: Mapping[str, Any], where: str) -> list[list[pyseccomp.Arg]]:
    # runc adds all conditions as one rule (AND), except when two compare the same argument: then
    # each condition becomes a rule of its own (OR), because libseccomp cannot AND those.
    args = []
    for cond in entry.get("args") or []:
        op = _OPS.get(cond.get("op", ""))
        if op is None:
            raise OciProfileError(f"{where}: unknown comparison {cond.get('op')!r}")
        # For MASKED_EQ the OCI `value` is the mask and `valueTwo` the value to compare with.
        args.append(pyseccomp.Arg(int(cond["index"]), op, int(cond["value"]), int(cond.get("valueTwo", 0))))
    if not args:
        return [[]]
    counts = Counter(int(cond["index"]) for cond in entry["args"])
    if max(counts.values()) > 1:
        return [[arg] for arg in args]
    return [args]


def build_from_oci(
    oci: Mapping[str, Any],
    arch: str = "x86_64",
    optimize: int = 2,
    *,
    caps: Iterable[str] = DOCKER_DEFAULT_CAPS,
    kernel: tuple[int, int] | None = None,
    sub_arches: Iterable[str] = (),
) -> pyseccomp.SyscallFilter:
    """A libseccomp filter for one arch, built from an OCI `linux.seccomp` profile the way runc builds it.

    Entries whose `includes`/`excludes` (arches, caps, minKernel) do not fit the target are skipped,
    as moby does for a container with capabilities `caps` on `kernel` (None: newer than any
    minKernel). Syscall names libseccomp does not know are skipped, as runc does. `optimize` is
    libseccomp's SCMP_FLTATR_CTL_OPTIMIZE: 1 a linear list by priority, 2 a binary tree.
    The filter covers `arch` plus `sub_arches`; runc adds the profile's archMap sub-architectures
    (x86 and x32 for x86_64), which triples the size of the filter.
    """
    for name in (arch, *sub_arches):
        if name not in ARCHES:
            raise OciProfileError(f"unknown arch {name!r} (known: {', '.join(sorted(ARCHES))})")
    token, goarch = ARCHES[arch]
    caps = frozenset(caps)
    default = _action(oci.get("defaultAction", ""), oci.get("defaultErrnoRet"), "defaultAction")

    filt = pyseccomp.SyscallFilter(default)
    if token != pyseccomp.system_arch():
        filt.add_arch(token)
        filt.remove_arch(pyseccomp.Arch.NATIVE)
    for name in sub_arches:
        # Before any rule: libseccomp does not add existing rules to an arch added later.
        filt.add_arch(ARCHES[name][0])
    filt.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, optimize)

    for i, entry in enumerate(oci.get("syscalls") or []):
        where = f"syscalls[{i}]"
        if not _applies(entry, goarch, caps, kernel):
            continue
        action = _action(entry.get("action", ""), entry.get("errnoRet"), where)
        if action == default:
            continue  # runc skips these: libseccomp refuses a rule whose action is the default
        rules = _conditions(entry, where)
        names = entry.get("names") or ([entry["name"]] if entry.get("name") else [])
        for name in names:
            # Rule syscall numbers are in the native arch's numbering; libseccomp translates them
            # (by name) for the filter's arches, and drops names an arch does not have.
            nr = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
            if nr == -1:
                continue
            for args in rules:
                try:
                    filt.add_rule(action, nr, *args)
                except OSError as exc:
                    raise OciProfileError(f"{where}: libseccomp refused the rule for {name}: {exc.strerror}") from exc
    return filt


def syscall_number(name: str, arch: str = "x86_64") -> int | None:
    """The number of syscall `name` on `arch` according to libseccomp, or None if that arch lacks it."""
    nr = pyseccomp.resolve_syscall(ARCHES[arch][0], name)
    return nr if nr >= 0 else None


def syscall_table(arch: str = "x86_64") -> dict[str, int]:
    """{name: number} for every syscall libseccomp (2.5.4: syscalls up to early 2022) knows on `arch`."""
    token = ARCHES[arch][0]
    table = {}
    for nr in range(1024):
        try:
            table[pyseccomp.resolve_syscall(token, nr).decode()] = nr
        except ValueError:
            continue
    return table


def export_bpf(filt: pyseccomp.SyscallFilter) -> bytes:
    """The filter as libseccomp would load it: raw `struct sock_filter[]`."""
    with tempfile.TemporaryFile() as f:
        filt.export_bpf(f)
        f.seek(0)
        return f.read()


def export_pfc(filt: pyseccomp.SyscallFilter) -> str:
    """libseccomp's pseudo filter code: a readable rendering of the rules it compiled."""
    with tempfile.TemporaryFile() as f:
        filt.export_pfc(f)
        f.seek(0)
        return f.read().decode()
