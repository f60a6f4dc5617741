"""Importing OCI seccomp profiles: Docker's default read in sandboxer terms, and export → import round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sandboxer.cli import app
from sandboxer.export.oci import export_oci
from sandboxer.export.oci_import import import_oci, render_import, resolve_oci, suggest_manifest
from sandboxer.manifest.load import load_policy
from sandboxer.model.registry import CAPABILITIES
from sandboxer.plan import Target, compile_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.yaml"))
DOCKER = ROOT.parent / "shared" / "data" / "docker-default-seccomp.json"
SOCKET_OR_PROCESS = ("wasi:sockets/", "sandboxer:")


@pytest.fixture(scope="module")
def docker() -> dict:
    """Docker's (moby's) default profile, read where the workspace keeps it; never copied into the repo."""
    if not DOCKER.is_file():
        pytest.skip(f"{DOCKER} is absent (reference data outside the repository)")
    return json.loads(DOCKER.read_text())


@pytest.fixture(scope="module")
def report(docker: dict) -> dict:
    return import_oci(docker, "x86_64")


# ---------------------------------------------------------------- Docker's default profile


def test_docker_default_amounts_to_these_capabilities(report: dict) -> None:
    """Sockets of every kind, processes, threads, clocks, randomness and writable files."""
    assert set(report["capabilities"]) == {
        "sandboxer:ipc/unix-sockets", "sandboxer:process/spawn", "sandboxer:process/threads",
        "wasi:clocks/monotonic-clock", "wasi:clocks/wall-clock", "wasi:filesystem/preopens",
        "wasi:random/insecure", "wasi:random/random", "wasi:sockets/ip-name-lookup",
        "wasi:sockets/tcp", "wasi:sockets/udp"}
    assert "mkdir" in report["capabilities"]["wasi:filesystem/preopens"]["write"]


def test_docker_default_allows_what_no_capability_grants(report: dict) -> None:
    """ptrace (kernel ≥ 4.8), credential changes, chroot (CAP_SYS_CHROOT is a default cap), file handles."""
    never = report["never"]
    for name in ("ptrace", "process_vm_readv", "setuid", "capset", "chroot", "name_to_handle_at",
                 "personality", "sched_setaffinity"):
        assert name in never, name
    assert never["ptrace"] == "debugging or reading other processes is never granted"
    for name in ("unshare", "mount", "bpf", "keyctl", "io_uring_setup", "open_by_handle_at"):
        assert name not in never, name


def test_docker_default_beyond_the_groups(report: dict) -> None:
    """SysV IPC, AIO, raw and netlink sockets, TIOCSTI and TCP Fast Open go beyond every capability."""
    beyond = {b["what"] for b in report["beyond"]}
    assert {"shmget", "msgget", "io_setup", "setrlimit", "socket(AF_NETLINK)", "socket(AF_PACKET)",
            "socket(AF_INET/SOCK_RAW)", "ioctl(TIOCSTI)", "sendto/sendmsg/sendmmsg(MSG_FASTOPEN)"} <= beyond
    assert "clone3" not in beyond  # Docker answers ENOSYS without CAP_SYS_ADMIN, as sandboxer does
    assert "clone(CLONE_NEW*)" not in beyond
    assert not {"read", "openat", "socket", "clone"} & beyond


def test_docker_default_socket_families(report: dict) -> None:
    """socket() is allowed for every family but AF_ALG (38) and AF_VSOCK (40)."""
    fam = report["socket_families"]
    assert fam["AF_INET/SOCK_STREAM"] and fam["AF_UNIX"] and fam["AF_NETLINK"]
    assert not fam["AF_ALG"] and not fam["AF_VSOCK"]


def test_docker_default_conditions(report: dict) -> None:
    """clone, personality and socket are allowed only under argument conditions, shown readably."""
    assert set(report["conditional"]) == {"clone", "personality", "socket"}
    assert report["conditional"]["clone"] == ["allow when arg0 & 0x7e020000 == 0x0"]
    assert "allow when arg0 < 0x26" in report["conditional"]["socket"]


def test_docker_default_resolution(report: dict, docker: dict) -> None:
    """Includes/excludes are applied as for an unprivileged container on x86_64; names of other arches are unknown."""
    assert report["on_violation"] == "deny" and report["on_violation_note"] is None
    assert report["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    skipped = {n: s["why"] for s in report["entries"]["skipped"] for n in s["names"]}
    assert skipped["arm_fadvise64_64"] == "only for arm, arm64"
    assert skipped["mount"] == "only with CAP_SYS_ADMIN"
    assert "arch_prctl" not in skipped and "ptrace" in report["allowed"]
    assert {"_llseek", "socketcall", "chown32"} <= set(report["unknown"])
    resolved = resolve_oci(docker, "x86_64")
    assert all("includes" not in e and "excludes" not in e for e in resolved["syscalls"])
    assert "archMap" not in resolved


def test_an_old_kernel_drops_ptrace(docker: dict) -> None:
    """minKernel is honoured when the kernel is given: ptrace needs 4.8."""
    old = import_oci(docker, "x86_64", kernel="4.4")
    assert "ptrace" not in old["never"]
    assert {"names": ["process_vm_readv", "process_vm_writev", "ptrace"], "why": "only on Linux 4.8+"} in old[
        "entries"]["skipped"]


def test_capabilities_change_the_profile(docker: dict) -> None:
    """No caps: no chroot. CAP_SYS_ADMIN: mount and unshare, clone with namespace flags and clone3."""
    assert "chroot" not in import_oci(docker, caps=frozenset())["never"]
    admin = import_oci(docker, caps=frozenset({"CAP_SYS_ADMIN"}))
    assert {"mount", "unshare", "setns", "bpf"} <= set(admin["never"])
    assert {"clone(CLONE_NEW*)", "clone3"} <= {b["what"] for b in admin["beyond"]}


def test_aarch64_resolution(docker: dict) -> None:
    """On aarch64 the arm entries apply, the x86-only ones do not."""
    arm = import_oci(docker, "aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    skipped = {n for s in arm["entries"]["skipped"] for n in s["names"]}
    assert "arch_prctl" in skipped and "cacheflush" not in skipped
    assert "sandboxer:process/spawn" in arm["capabilities"]  # clone, since aarch64 has no fork


def test_render_import_reads_well(report: dict) -> None:
    """The text names the capabilities, the never-granted calls with their reason, and the conditions."""
    text = render_import(report)
    assert text.startswith("OCI seccomp profile on x86_64 (default action SCMP_ACT_ERRNO),\n")
    assert "  wasi:sockets/tcp\n" in text
    assert "wasi:filesystem/preopens (with write access)" in text
    assert "process_vm_readv, process_vm_writev, ptrace: debugging or reading other processes is never granted" in text
    assert "  clone: allow when arg0 & 0x7e020000 == 0x0\n" in text
    assert "bpf, clone, clone3, fanotify_init, fsconfig …: only with CAP_SYS_ADMIN" in text


def test_suggested_manifest_compiles(report: dict, tmp_path: Path) -> None:
    """The skeleton is a valid manifest granting what was found, and says what it left out."""
    text = suggest_manifest(report)
    doc = yaml.safe_load(text)
    assert doc["sandboxer"] == 1 and doc["on-violation"] == "deny"
    assert "wasi:random/insecure" not in doc["imports"]  # implied by wasi:random/random
    assert doc["imports"]["wasi:filesystem/preopens"] == [{"path": "/data", "access": "read+write"}]
    assert "# Not carried over (no capability grants them): adjtimex," in text
    (tmp_path / "m.yaml").write_text(text)
    plan = compile_plan(load_policy(tmp_path / "m.yaml"), Target("x86_64", 7))
    assert "ptrace" not in {s["name"] for s in plan["seccomp"]["syscalls"]}


# ---------------------------------------------------------------- small profiles


def test_default_actions_map_to_on_violation() -> None:
    """KILL → kill, LOG → log, a deny list (default ALLOW) → deny with a note."""
    base = {"architectures": ["SCMP_ARCH_X86_64"], "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
    assert import_oci({"defaultAction": "SCMP_ACT_KILL_PROCESS", **base})["on_violation"] == "kill"
    assert import_oci({"defaultAction": "SCMP_ACT_LOG", **base})["on_violation"] == "log"
    deny_list = import_oci({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]})
    assert deny_list["on_violation"] == "deny" and "deny list" in deny_list["on_violation_note"]
    assert "ptrace" not in deny_list["never"] and "mount" in deny_list["never"]
    eacces = import_oci({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13, **base})
    assert eacces["on_violation_note"] == "the profile returns EACCES, sandboxer EPERM"


def test_a_minimal_profile_grants_nothing() -> None:
    """Only the runtime base: no capability, nothing beyond."""
    r = import_oci({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read", "write", "exit_group", "execve"], "action": "SCMP_ACT_ALLOW"}]})
    assert r["capabilities"] == {} and r["never"] == {} and r["beyond"] == []
    assert r["runtime"] == ["execve", "exit_group", "read", "write"]
    assert r["by_syscall"]["read"] == {"capability": "runtime", "reason": None}


def test_thread_only_clone_is_threads_not_spawn() -> None:
    """clone allowed only with CLONE_THREAD is sandboxer:process/threads."""
    r = import_oci({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x10000, "valueTwo": 0x10000, "op": "SCMP_CMP_MASKED_EQ"}]}]})
    assert set(r["capabilities"]) == {"sandboxer:process/threads"}


# ---------------------------------------------------------------- round trips


def seccomp_relevant(plan: dict) -> set[str]:
    """Grants that change the seccomp filter: a syscall footprint, or argument-checked calls."""
    return {g["capability"] for g in plan["grants"]
            if CAPABILITIES[g["capability"]].seccomp or g["capability"].startswith(SOCKET_OR_PROCESS)}


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("example", EXAMPLES)
def test_round_trip_finds_the_grants(example: str, arch: str, at_root: None) -> None:
    """export_oci → import_oci finds every seccomp-relevant grant, and nothing never-granted or beyond."""
    plan = compile_plan(load_policy(f"examples/{example}.yaml"), Target(arch, 7))
    report = import_oci(export_oci(plan["seccomp"]), arch)
    assert seccomp_relevant(plan) <= set(report["capabilities"])
    assert all(not info["missing"] for info in report["capabilities"].values())
    assert report["never"] == {} and report["beyond"] == []
    wrote = any("write_file" in p["access"] for p in plan["landlock"]["paths"])
    assert bool(report["capabilities"]["wasi:filesystem/preopens"].get("write")) == wrote


@pytest.mark.parametrize("example", EXAMPLES)
def test_export_import_skeleton_compile_is_stable(example: str, at_root: None, tmp_path: Path) -> None:
    """export → import → skeleton → compile → export gives the original profile back, and again on a second lap."""
    original = export_oci(compile_plan(load_policy(f"examples/{example}.yaml"), Target("x86_64", 7))["seccomp"])
    profiles = [original]
    for lap in range(2):
        manifest = tmp_path / f"lap{lap}.yaml"
        manifest.write_text(suggest_manifest(import_oci(profiles[-1])))
        profiles.append(export_oci(compile_plan(load_policy(manifest), Target("x86_64", 7))["seccomp"]))
    assert profiles[2] == profiles[1], "the second lap changed the profile"
    assert profiles[1] == original, "the skeleton's profile differs from the example's"


# ---------------------------------------------------------------- CLI


def test_cli_import_oci(docker: dict) -> None:
    """`sandboxer import-oci` prints the report, --json the data, --manifest the skeleton."""
    runner = CliRunner()
    text = runner.invoke(app, ["import-oci", str(DOCKER), "--arch", "x86_64"])
    assert text.exit_code == 0 and text.output == render_import(import_oci(docker))
    data = runner.invoke(app, ["import-oci", str(DOCKER), "--json", "--arch", "x86_64"])
    assert json.loads(data.output)["never"]["ptrace"]
    skel = runner.invoke(app, ["import-oci", str(DOCKER), "--manifest", "--arch", "x86_64"])
    assert yaml.safe_load(skel.output)["imports"]["wasi:sockets/udp"] == {}


def test_cli_import_oci_rejects_non_profiles(tmp_path: Path) -> None:
    """A JSON file without defaultAction, or no JSON at all, is a usage error (exit 2)."""
    (tmp_path / "x.json").write_text('{"a": 1}')
    r = CliRunner().invoke(app, ["import-oci", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and "not an OCI seccomp profile (no defaultAction)" in r.output
    (tmp_path / "y.json").write_text("nope")
    r = CliRunner().invoke(app, ["import-oci", str(tmp_path / "y.json")])
    assert r.exit_code == 2 and "cannot read" in r.output
