"""Unit tests for Landlock downgrade(), prepare_ruleset()'s checks before any syscall, struct layouts."""

from __future__ import annotations

import copy
import ctypes

import pytest

from sandboxer.mechanisms.landlock.apply import (
    LandlockError,
    LandlockPathError,
    NetPortAttr,
    PathBeneathAttr,
    RulesetAttr,
    downgrade,
    prepare_ruleset,
    ruleset_attr_size,
)
from sandboxer.mechanisms.landlock.rights import FS_RIGHTS, rights_at

SECTION = {
    "abi": 7,
    "handled_fs": rights_at(FS_RIGHTS, 7),
    "handled_net": ["bind_tcp", "connect_tcp"],
    "scoped": ["abstract_unix_socket", "signal"],
    "paths": [
        {"path": "/dev", "access": ["ioctl_dev", "read_dir", "read_file"], "because": ["x"]},
        {
            "path": "/srv/out",
            "access": ["read_file", "refer", "truncate", "write_file"],
            "at": "m.yaml:9:7",
        },
    ],
    "ports": [{"port": 443, "access": ["connect_tcp"], "because": ["z"]}],
    "restrict_flags": ["log_new_exec_on"],
}


def test_downgrade_is_identity_when_the_kernel_is_new_enough() -> None:
    """A kernel at or above the plan's ABI gets an equal copy and nothing dropped."""
    out, dropped = downgrade(SECTION, 7)
    assert out == SECTION and out is not SECTION
    assert dropped == []


def test_downgrade_does_not_mutate_its_input() -> None:
    """downgrade() is pure: the section passed in is unchanged."""
    before = copy.deepcopy(SECTION)
    downgrade(SECTION, 1)
    assert SECTION == before


def test_downgrade_to_abi_5_drops_scopes_and_log_flags() -> None:
    """ABI 5 keeps every fs and net right but loses the ABI 6 scopes and the ABI 7 flags."""
    out, dropped = downgrade(SECTION, 5)
    assert dropped == ["scope:abstract_unix_socket", "scope:signal", "flag:log_new_exec_on"]
    assert out["abi"] == 5
    assert out["handled_fs"] == SECTION["handled_fs"]
    assert out["handled_net"] == SECTION["handled_net"]
    assert out["scoped"] == [] and out["restrict_flags"] == []
    assert out["paths"] == SECTION["paths"] and out["ports"] == SECTION["ports"]


def test_downgrade_to_abi_3_drops_ioctl_dev_and_all_tcp_rules() -> None:
    """ABI 3 has no ioctl_dev and no network rights, so port rules go too."""
    out, dropped = downgrade(SECTION, 3)
    assert dropped == [
        "fs:ioctl_dev",
        "net:bind_tcp",
        "net:connect_tcp",
        "scope:abstract_unix_socket",
        "scope:signal",
        "flag:log_new_exec_on",
    ]
    assert out["handled_fs"] == rights_at(FS_RIGHTS, 3)
    assert out["handled_net"] == [] and out["ports"] == []
    assert out["paths"][0] == dict(SECTION["paths"][0], access=["read_dir", "read_file"])
    assert out["paths"][1] == SECTION["paths"][1]


def test_downgrade_to_abi_1_drops_refer_and_truncate_from_rules() -> None:
    """ABI 1 loses refer and truncate, in handled_fs and in every path rule."""
    out, dropped = downgrade(SECTION, 1)
    assert dropped[:3] == ["fs:refer", "fs:truncate", "fs:ioctl_dev"]
    assert out["abi"] == 1
    assert out["paths"][1]["access"] == ["read_file", "write_file"]
    assert out["paths"][1]["at"] == "m.yaml:9:7"


def test_downgrade_to_abi_0_leaves_nothing_to_enforce() -> None:
    """Without Landlock every right is dropped."""
    out, dropped = downgrade(SECTION, 0)
    assert out["handled_fs"] == [] and out["scoped"] == [] and out["ports"] == []
    assert len(dropped) == len(SECTION["handled_fs"]) + 5


def test_prepare_refuses_a_plan_newer_than_the_kernel() -> None:
    """A too-old kernel is refused with the rights it lacks and the best-effort hint."""
    with pytest.raises(LandlockError) as exc:
        prepare_ruleset(SECTION, kernel_abi=5)
    assert str(exc.value) == (
        "the plan needs Landlock ABI 7 (Linux 6.15); this kernel has ABI 5, which lacks:"
        " scope:abstract_unix_socket (ABI 6, Linux 6.12), scope:signal (ABI 6, Linux 6.12),"
        " flag:log_new_exec_on (ABI 7, Linux 6.15)."
        " Set compat.landlock: best-effort to run without them, or use a newer kernel."
    )
    assert exc.value.exit_code == 125


def test_prepare_refuses_a_kernel_without_landlock() -> None:
    """ABI 0 means no Landlock at all."""
    with pytest.raises(LandlockError, match=r"^Landlock is not available on this kernel"):
        prepare_ruleset(downgrade(SECTION, 1)[0], kernel_abi=0)


def test_prepare_refuses_unknown_names() -> None:
    """A misspelt right in a hand-edited plan is named, before any syscall."""
    bad = dict(SECTION, paths=[{"path": "/x", "access": ["read_fiel"]}])
    with pytest.raises(LandlockError) as exc:
        prepare_ruleset(bad, kernel_abi=7)
    assert str(exc.value) == "the plan names unknown Landlock rights, scopes or flags: ['read_fiel']"


def test_prepare_refuses_rights_newer_than_the_plan_abi() -> None:
    """An ABI 3 plan that handles TCP would be silently cut by the 8-byte attr, so it is refused."""
    bad = dict(downgrade(SECTION, 3)[0], handled_net=["bind_tcp"])
    with pytest.raises(LandlockError) as exc:
        prepare_ruleset(bad, kernel_abi=7)
    assert str(exc.value) == "the plan targets Landlock ABI 3 but uses net:bind_tcp (ABI 4, Linux 6.7)"


def test_path_error_message() -> None:
    """A path error names the path, the manifest position and the errno."""
    err = LandlockPathError("/srv/in", "m.yaml:9:7", 2)
    assert str(err) == (
        "cannot open /srv/in (m.yaml:9:7) for a Landlock rule: ENOENT: No such file or directory"
    )
    assert str(LandlockPathError("/srv/in", None, 2)).startswith("cannot open /srv/in for a Landlock")


def test_struct_sizes_match_the_uapi_header() -> None:
    """The structs match include/uapi/linux/landlock.h, path_beneath packed to 12 bytes."""
    assert ctypes.sizeof(PathBeneathAttr) == 12
    assert PathBeneathAttr.parent_fd.offset == 8
    assert ctypes.sizeof(NetPortAttr) == 16
    assert ctypes.sizeof(RulesetAttr) == 24
    assert (RulesetAttr.handled_access_net.offset, RulesetAttr.scoped.offset) == (8, 16)


@pytest.mark.parametrize(("abi", "size"), [(1, 8), (2, 8), (3, 8), (4, 16), (5, 16), (6, 24), (7, 24)])
def test_ruleset_attr_size_follows_the_abi(abi: int, size: int) -> None:
    """The ruleset attr grows with handled_access_net (ABI 4) and scoped (ABI 6)."""
    assert ruleset_attr_size(abi) == size
