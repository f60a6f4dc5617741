"""Table invariants of the seccomp syscall groups (after systemd's seccomp-util tests), and NEVER stays never."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from sandboxer.manifest.load import load_policy
from sandboxer.mechanisms.seccomp import groups
from sandboxer.mechanisms.seccomp.bpf import RET_ALLOW, RET_LOG, assemble
from sandboxer.mechanisms.seccomp.emulator import run
from sandboxer.mechanisms.seccomp.tables import ARCHES, TABLES
from sandboxer.model.registry import CAPABILITIES
from sandboxer.plan import Target, compile_plan

X86, ARM = set(TABLES["x86_64"].SYSCALLS), set(TABLES["aarch64"].SYSCALLS)
# compile.py writes argument rules for these; a group member would allow them unchecked
CHECKED = {"clone", "clone3", "ioctl", "socket", "socketpair", "sendto", "sendmsg", "sendmmsg"}


def _members() -> set[str]:
    return {m for g in groups.GROUPS.values() for m in g.members if not m.startswith("@")}


def _source_member_lists() -> dict[str, list[str]]:
    """Each group's members as written in groups.py (GROUPS itself is sorted by `_g`)."""
    out = {}
    for node in ast.walk(ast.parse(inspect.getsource(groups))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_g":
            name, _, members = (ast.literal_eval(a) for a in node.args)
            out[name] = members.split()
    return out


def test_members_are_sorted_without_duplicates() -> None:
    """Each group's members are sorted and unique, both in GROUPS and as written in the source."""
    written = _source_member_lists()
    assert set(written) == set(groups.GROUPS)
    for name, group in groups.GROUPS.items():
        assert list(group.members) == sorted(group.members), name
        assert written[name] == sorted(set(written[name])), f"{name}: members out of order or repeated"


def test_every_group_is_named_by_its_key_and_has_one_line_of_help() -> None:
    """Keys are @names equal to the group's own name; help is one non-empty line."""
    for key, group in groups.GROUPS.items():
        assert key == group.name and key.startswith("@")
        assert group.help.strip() and "\n" not in group.help, key
        assert group.members, key


def test_every_reference_resolves() -> None:
    """Every @member names a group in GROUPS."""
    for group in groups.GROUPS.values():
        for m in group.members:
            if m.startswith("@"):
                assert m in groups.GROUPS, f"{group.name} refers to unknown {m}"


def test_every_group_expands_without_cycles() -> None:
    """expand() terminates for every group and yields plain syscall names."""
    for name in groups.GROUPS:
        names = groups.expand([name])
        assert names and not any(n.startswith("@") for n in names), name


def test_expand_detects_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group that reaches itself raises ValueError instead of recursing forever."""
    monkeypatch.setitem(groups.GROUPS, "@a", groups.Group("@a", "a", ("@b",)))
    monkeypatch.setitem(groups.GROUPS, "@b", groups.Group("@b", "b", ("@a", "read")))
    with pytest.raises(ValueError, match="cycle"):
        groups.expand(["@a"])


def test_every_member_exists_on_some_arch() -> None:
    """No member is a typo: each is in the x86_64 or the aarch64 table."""
    assert sorted(m for m in _members() if m not in X86 and m not in ARM) == []


def test_members_outside_x86_64_only_exist_on_both_arches() -> None:
    """A name not listed in X86_64_ONLY is a syscall on x86_64 and on aarch64."""
    missing = sorted((m, "x86_64" if m not in X86 else "aarch64")
                     for m in _members() - groups.X86_64_ONLY if m not in X86 or m not in ARM)
    assert missing == []


def test_x86_64_only_names_are_exactly_that() -> None:
    """Every X86_64_ONLY name is in the x86_64 table and absent from aarch64's."""
    assert sorted(n for n in groups.X86_64_ONLY if n not in X86) == []
    assert sorted(n for n in groups.X86_64_ONLY if n in ARM) == []


def test_never_is_disjoint_from_every_group() -> None:
    """No group, expanded, contains a NEVER syscall."""
    for name in groups.GROUPS:
        assert groups.expand([name]) & set(groups.NEVER) == set(), name


def test_never_names_exist_and_have_reasons() -> None:
    """Every NEVER entry is a real syscall on some arch and says why it is never granted."""
    for name, why in groups.NEVER.items():
        assert name in X86 or name in ARM, name
        assert why.strip(), name


def test_checked_syscalls_are_in_no_group() -> None:
    """Calls whose arguments compile.py checks are never allowed wholesale by a group."""
    for name in groups.GROUPS:
        assert groups.expand([name]) & CHECKED == set(), name


def test_capabilities_name_only_known_groups_and_syscalls() -> None:
    """Every seccomp entry of the registry is a group or a syscall of some table."""
    for cap in CAPABILITIES.values():
        for entry in cap.seccomp:
            assert entry in groups.GROUPS if entry.startswith("@") else (entry in X86 or entry in ARM), cap.name


def _everything_manifest() -> str:
    lines = ["sandboxer: 1", "name: everything", "imports:"]
    for name, cap in CAPABILITIES.items():
        if cap.shape == "preopens":
            lines += [f"  {name}:", "    - {path: /, access: read+write+exec}"]
        elif "connect" in cap.params:
            lines.append(f"  {name}: {{connect: [443], bind: [8080]}}")
        else:
            lines.append(f"  {name}: {{}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("on_violation", ["deny", "kill", "log"])
def test_granting_everything_still_never_allows_never(
        arch: str, on_violation: str, tmp_path: Path) -> None:
    """With every capability granted, no NEVER syscall is in the plan or passes the BPF."""
    manifest = tmp_path / "everything.yaml"
    manifest.write_text(_everything_manifest() + f"on-violation: {on_violation}\n")
    plan = compile_plan(load_policy(manifest), Target(arch, 7))
    assert {g["capability"] for g in plan["grants"]} == set(CAPABILITIES)
    allowed = {s["name"] for s in plan["seccomp"]["syscalls"] if s["action"] == "allow" or s.get("rules")}
    assert allowed & set(groups.NEVER) == set()
    tbl = TABLES[arch]
    prog = assemble(plan["seccomp"])
    for name in groups.NEVER:
        if name in tbl.SYSCALLS:
            action, _ = run(prog, tbl.SYSCALLS[name], tbl.AUDIT_ARCH)
            assert action != RET_ALLOW, name
            assert action != RET_LOG, f"{name} would run in complain mode"
