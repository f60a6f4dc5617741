"""The OCI exporter: complement prefixes are exact, and libseccomp's filter from our OCI JSON behaves like our BPF."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandboxer.export.oci import complement_prefixes, export_oci
from sandboxer.manifest.load import load_policy
from sandboxer.mechanisms.seccomp.bpf import assemble
from sandboxer.mechanisms.seccomp.emulator import run
from sandboxer.mechanisms.seccomp.libseccomp import build_from_oci, export_bpf, syscall_number
from sandboxer.mechanisms.seccomp.tables import TABLES
from sandboxer.plan import Target, compile_plan

ROOT = Path(__file__).resolve().parents[2]


def _matches(prefixes: list[tuple[int, int]], x: int) -> int:
    return sum(1 for mask, value in prefixes if x & mask == value)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 255), max_size=12))
def test_complement_prefixes_cover_exactly_the_complement(values: set[int]) -> None:
    """Over all 256 8-bit numbers, a number matches a prefix iff it is not excluded, and then just one."""
    prefixes = complement_prefixes(sorted(values), 8)
    for x in range(256):
        assert _matches(prefixes, x) == (0 if x in values else 1), x


@settings(max_examples=100, deadline=None)
@given(st.sets(st.integers(0, 255), max_size=12))
def test_complement_prefixes_are_well_formed(values: set[int]) -> None:
    """Each prefix is a run of high mask bits, its value lies inside the mask, and there are at most 8 per value."""
    prefixes = complement_prefixes(list(values), 8)
    for mask, value in prefixes:
        assert value & ~mask == 0
        assert mask == (0xFF & ~((1 << (8 - bin(mask).count("1"))) - 1))
    assert len(prefixes) <= max(1, 8 * len(values))


def test_complement_prefixes_edges() -> None:
    """Nothing excluded is one match-all prefix; everything excluded is no prefix."""
    assert complement_prefixes([], 8) == [(0, 0)]
    assert complement_prefixes(list(range(256)), 8) == []
    assert complement_prefixes([0x5412]) and all(v != 0x5412 for _, v in complement_prefixes([0x5412]))


# --- behaviour: libseccomp's filter from our OCI JSON against our own BPF ------------------------

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 1, 2, 10, 16, 17
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_NONBLOCK, SOCK_CLOEXEC = 1, 2, 3, 0x800, 0x80000
SIGCHLD, CLONE_VM, CLONE_THREAD = 17, 0x100, 0x10000
CLONE_NEW = {"ns": 0x20000, "cgroup": 0x2000000, "uts": 0x4000000, "ipc": 0x8000000,
             "user": 0x10000000, "pid": 0x20000000, "net": 0x40000000}
PTHREAD = 0x3D0F00  # glibc pthread_create: VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
TIOCSTI, TIOCLINUX, TCGETS = 0x5412, 0x541C, 0x5401
MSG_FASTOPEN, MSG_NOSIGNAL, MSG_DONTWAIT = 0x20000000, 0x4000, 0x40

VALUES = sorted({
    0, 1, SIGCHLD, CLONE_VM | SIGCHLD, PTHREAD, PTHREAD & ~CLONE_THREAD, CLONE_THREAD,
    *(SIGCHLD | f for f in CLONE_NEW.values()), PTHREAD | CLONE_NEW["user"], 0x1_0000_0000 | SIGCHLD,
    TIOCSTI, TIOCLINUX, TCGETS, 0x1_0000_5412, 0xFFFF_FFFF_0000_5412, 0x1_0000_5401,
    MSG_FASTOPEN, MSG_FASTOPEN | MSG_NOSIGNAL, MSG_NOSIGNAL | MSG_DONTWAIT, 0x1_0000_0000 | MSG_FASTOPEN,
    0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF,
})
SOCKET_PAIRS = [(fam, typ) for fam in (AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, 0x1_0000_0002)
                for typ in (SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_STREAM | SOCK_CLOEXEC,
                            SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0x1_0000_0001)]
# each interesting value in each argument slot, plus (family, type) pairs for socket/socketpair
ARG_TUPLES = sorted({
    *(tuple(v if i == slot else 0 for i in range(6)) for v in VALUES for slot in range(6)),
    *((fam, typ, 0, 0, 0, 0) for fam, typ in SOCKET_PAIRS),
    (0,) * 6, (0xFFFF_FFFF_FFFF_FFFF,) * 6,
})

EVERY_CAPABILITY = """\
sandboxer: 1
imports:
  wasi:filesystem/preopens: [{path: /srv, access: read+write+exec}]
  wasi:sockets/tcp: {connect: [443], bind: [8080]}
  wasi:sockets/udp: {}
  wasi:sockets/ip-name-lookup: {}
  sandboxer:process/spawn: {}
  sandboxer:process/threads: {}
  sandboxer:ipc/unix-sockets: {}
  wasi:clocks/monotonic-clock: {}
  wasi:random/random: {}
"""
SYNTHETIC = {
    "threads-only": "sandboxer: 1\nimports: {sandboxer:process/threads: {}}\n",
    "spawn-and-threads": "sandboxer: 1\nimports: {sandboxer:process/spawn: {}, sandboxer:process/threads: {}}\n",
    "unix-and-udp": "sandboxer: 1\nimports: {sandboxer:ipc/unix-sockets: {}, wasi:sockets/udp: {}}\n",
    "everything-kill": EVERY_CAPABILITY + "on-violation: kill\n",
    "everything-log": EVERY_CAPABILITY + "on-violation: log\n",
    "everything-deny": EVERY_CAPABILITY,
    "nothing-log": "sandboxer: 1\non-violation: log\nimports: {wasi:cli/stdout: {}}\n",
    "spawn-log": "sandboxer: 1\non-violation: log\nimports: {sandboxer:process/spawn: {}}\n",
}
MANIFESTS = [*(f"examples/{p.name}" for p in sorted((ROOT / "examples").glob("*.yaml"))),
             *(f"profiles/{p.name}" for p in sorted((ROOT / "profiles").glob("*.yaml"))),
             *SYNTHETIC]


def _section(manifest: str, arch: str, tmp_path: Path) -> dict:
    if manifest in SYNTHETIC:
        path = tmp_path / f"{manifest}.yaml"
        path.write_text(SYNTHETIC[manifest])
    else:
        path = ROOT / manifest
    return compile_plan(load_policy(path), Target(arch, 7))["seccomp"]


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_libseccomp_from_oci_behaves_like_our_bpf(manifest: str, tmp_path: Path) -> None:
    """For every x86_64 syscall number and many argument tuples, both filters return the same action."""
    section = _section(manifest, "x86_64", tmp_path)
    ours = assemble(section)
    theirs = export_bpf(build_from_oci(export_oci(section), "x86_64", 2))
    tbl = TABLES["x86_64"]
    # runc skips names its libseccomp does not know (2.5 lacks mseal, getxattrat, ...): they get
    # defaultAction there, so only numbers both sides can name are compared
    names = {nr: name for name, nr in tbl.SYSCALLS.items() if syscall_number(name, "x86_64") is not None}
    assert len(names) > 0.9 * len(tbl.SYSCALLS)
    differ = []
    for nr in sorted(names):
        for args in ARG_TUPLES:
            a, _ = run(ours, nr, tbl.AUDIT_ARCH, args)
            b, _ = run(theirs, nr, tbl.AUDIT_ARCH, args)
            if a != b:
                differ.append(f"{names[nr]}{tuple(hex(x) for x in args)}: ours {a:#x}, libseccomp {b:#x}")
    assert differ == [], "\n".join(differ[:20])


def test_the_argument_tuples_exercise_both_outcomes(tmp_path: Path) -> None:
    """The tuples reach both the allow and the violation side of every checked call (the test has teeth)."""
    section = _section("everything-deny", "x86_64", tmp_path)
    prog = assemble(section)
    tbl = TABLES["x86_64"]
    for entry in section["syscalls"]:
        if entry.get("rules"):
            outcomes = {run(prog, entry["nr"], tbl.AUDIT_ARCH, args)[0] for args in ARG_TUPLES}
            assert len(outcomes) >= 2, entry["name"]


@pytest.mark.parametrize("manifest", ["examples/tcp-client.yaml", "everything-deny"])
def test_oci_export_for_aarch64_builds_in_libseccomp(manifest: str, tmp_path: Path) -> None:
    """The aarch64 OCI profile names the aarch64 arch and libseccomp accepts every rule."""
    section = _section(manifest, "aarch64", tmp_path)
    oci = export_oci(section)
    assert oci["architectures"] == ["SCMP_ARCH_AARCH64"]
    assert export_bpf(build_from_oci(oci, "aarch64", 2))


def test_deny_defaults_carry_eperm(tmp_path: Path) -> None:
    """on-violation deny exports SCMP_ACT_ERRNO with defaultErrnoRet EPERM (1)."""
    oci = export_oci(_section("examples/hello.yaml", "x86_64", tmp_path))
    assert (oci["defaultAction"], oci["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", 1)
