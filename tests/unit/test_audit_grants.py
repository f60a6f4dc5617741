"""grants.py: complain-mode matching of decoded syscalls against a plan's Landlock section."""

from __future__ import annotations

import os

import pytest

from sandboxer.audit.grants import FileGrants, PortGrants, access_for, accesses_for, net_access_for, would_deny
from sandboxer.mechanisms.landlock.compile import ACCESS_RIGHTS
from sandboxer.mechanisms.landlock.rights import FS_RIGHTS, NET_RIGHTS

READ, WRITE, EXEC = (sorted(ACCESS_RIGHTS[k]) for k in ("read", "write", "exec"))


@pytest.fixture
def tree(tmp_path):
    """in/ (read), out/ (read+write), bin/tool (exec), link-to-in -> in, in/escape -> ../secret"""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key").write_text("k")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_text("#!/bin/sh\n")
    (tmp_path / "link-to-in").symlink_to("in")
    (tmp_path / "in" / "escape").symlink_to("../secret")
    (tmp_path / "out" / "to-secret").symlink_to("../secret/key")
    section = {
        "abi": 7,
        "handled_fs": list(FS_RIGHTS),
        "handled_net": list(NET_RIGHTS),
        "paths": [
            {"path": str(tmp_path / "in"), "access": READ},
            {"path": str(tmp_path / "out"), "access": sorted(set(READ) | set(WRITE))},
            # a file rule: read_dir and the write half cannot apply to a file
            {"path": str(tmp_path / "bin" / "tool"), "access": sorted(set(EXEC) | {"read_dir", "make_reg"})},
            {"path": str(tmp_path / "missing"), "access": READ, "optional": True},
            {"path": str(tmp_path / "link-to-in"), "access": ["write_file"]},  # resolves to in/
        ],
        "ports": [{"port": 443, "access": ["connect_tcp"]}, {"port": 8080, "access": ["bind_tcp", "connect_tcp"]}],
    }
    return tmp_path, section


def d(name, **args):
    return {"name": name, "nr": 0, "args": args}


def test_path_beneath_and_file_rules(tree):
    root, section = tree
    g = FileGrants(section)
    assert g.skipped == [str(root / "missing")]
    assert g.allows(str(root / "in" / "a.csv"), {"read_file"})
    assert g.allows(str(root / "in"), {"read_dir"})
    assert g.allows(str(root / "in" / "deep" / "x"), {"read_file"})  # beneath, even if missing
    assert not g.allows(str(root / "secret" / "key"), {"read_file"})
    assert not g.allows(str(root / "input-not-beneath"), {"read_file"})  # a prefix is not a parent
    assert g.allows(str(root / "bin" / "tool"), {"execute", "read_file"})
    assert not g.allows(str(root / "bin" / "tool"), {"make_reg"})  # dropped on a file rule
    assert not g.allows(str(root / "bin"), {"read_dir"})
    # the rule on link-to-in landed on in/ (landlock_add_rule opens it, following the link)
    assert g.allows(str(root / "in" / "a.csv"), {"write_file"})
    assert g.missing(str(root / "in" / "a.csv"), {"read_file", "truncate"}) == {"truncate"}


def test_unhandled_rights_are_always_allowed(tree):
    root, section = tree
    g = FileGrants(dict(section, handled_fs=["read_file"]))
    assert g.allows(str(root / "secret" / "key"), {"write_file", "truncate"})
    assert not g.allows(str(root / "secret" / "key"), {"read_file"})


def test_symlinks_resolve_as_the_kernel_would(tree):
    root, section = tree
    g = FileGrants(section)
    # in/escape -> ../secret: reading through a granted directory does not grant the target
    assert not g.allows(str(root / "in" / "escape" / "key"), {"read_file"})
    # '..' after a symlink is resolved from the link's target, not lexically
    assert not g.allows(str(root / "in" / "escape" / ".." / "secret" / "key"), {"read_file"})
    assert g.allows(str(root / "link-to-in" / "a.csv"), {"read_file"})
    # the link itself, not followed (lstat-like calls): it lives in out/
    assert g.allows(str(root / "out" / "to-secret"), {"read_file"}, follow=False)
    assert not g.allows(str(root / "out" / "to-secret"), {"read_file"})


def test_open_rights(tree):
    root, _ = tree
    p = str(root / "out" / "old.txt")
    assert accesses_for(d("openat", path=p, flags="O_RDONLY")) == [(p, {"read_file"})]
    assert accesses_for(d("openat", path=p, flags="O_RDWR|O_CLOEXEC")) == [(p, {"read_file", "write_file"})]
    assert accesses_for(d("openat", path=p, flags="O_WRONLY|O_TRUNC")) == [(p, {"write_file", "truncate"})]
    assert accesses_for(d("openat", path=p, flags="O_RDONLY|O_PATH")) == []
    new = str(root / "out" / "new.txt")
    assert accesses_for(d("openat", path=new, flags="O_WRONLY|O_CREAT|O_TRUNC")) == [
        (str(root / "out"), {"make_reg"}), (new, {"write_file"})]  # no truncate on a file it creates
    assert accesses_for(d("open", path=str(root / "in"), flags="O_RDONLY|O_DIRECTORY")) == [
        (str(root / "in"), {"read_dir"})]
    # following a symlink lands on the target
    assert access_for(d("open", path=str(root / "out" / "to-secret"), flags="O_RDONLY")) == (
        str(root / "secret" / "key"), {"read_file"})
    assert access_for(d("creat", path=new, flags="O_WRONLY|O_CREAT|O_TRUNC", mode="0o600")) == (
        new, {"write_file"})


def test_exec_unlink_mkdir_mknod_symlink_truncate(tree):
    root, _ = tree
    tool = str(root / "bin" / "tool")
    assert accesses_for(d("execve", path=tool, argv=["tool"])) == [(tool, {"execute", "read_file"})]
    assert accesses_for(d("unlink", path=str(root / "out" / "old.txt"))) == [(str(root / "out"), {"remove_file"})]
    assert accesses_for(d("unlinkat", path=str(root / "out" / "d"), flags="AT_REMOVEDIR")) == [
        (str(root / "out"), {"remove_dir"})]
    assert accesses_for(d("rmdir", path=str(root / "in" / "x"))) == [(str(root / "in"), {"remove_dir"})]
    assert accesses_for(d("mkdir", path=str(root / "out" / "d"), mode="0o755")) == [(str(root / "out"), {"make_dir"})]
    assert accesses_for(d("mknodat", path=str(root / "out" / "f"), type="S_IFIFO")) == [
        (str(root / "out"), {"make_fifo"})]
    assert accesses_for(d("symlink", target="x", linkpath=str(root / "in" / "l"))) == [
        (str(root / "in"), {"make_sym"})]
    # unlinking a symlink works on the link: its directory counts, not the target's
    assert accesses_for(d("unlink", path=str(root / "in" / "escape"))) == [(str(root / "in"), {"remove_file"})]
    assert accesses_for(d("truncate", path=str(root / "out" / "old.txt"))) == [
        (str(root / "out" / "old.txt"), {"truncate"})]
    assert accesses_for(d("chmod", path=tool, mode="0o777")) == []  # Landlock does not control chmod
    assert accesses_for(d("stat", path=tool)) == []


def test_rename_and_link(tree):
    root, _ = tree
    out, src = str(root / "out"), str(root / "out" / "old.txt")
    assert accesses_for(d("rename", oldpath=src, newpath=str(root / "out" / "n.txt"))) == [
        (out, {"remove_file"}), (out, {"make_reg"})]
    assert accesses_for(d("renameat2", oldpath=src, newpath=str(root / "in" / "n.txt"))) == [
        (out, {"remove_file", "refer"}), (str(root / "in"), {"make_reg", "refer"})]
    # replacing an existing file needs remove_file on the destination too
    (root / "out" / "n2.txt").write_text("y")
    assert accesses_for(d("rename", oldpath=src, newpath=str(root / "out" / "n2.txt"))) == [
        (out, {"remove_file"}), (out, {"make_reg", "remove_file"})]
    assert accesses_for(d("rename", oldpath=str(root / "in"), newpath=str(root / "out" / "in2"))) == [
        (str(root), {"remove_dir", "refer"}), (out, {"make_dir", "refer"})]
    assert accesses_for(d("link", oldpath=src, newpath=str(root / "in" / "hard"))) == [
        (out, {"refer"}), (str(root / "in"), {"make_reg", "refer"})]


def test_would_deny_lists_the_missing_rights(tree):
    root, section = tree
    g, p = FileGrants(section), PortGrants(section)
    assert would_deny(d("openat", path=str(root / "in" / "a.csv"), flags="O_RDONLY"), g, p) == []
    assert would_deny(d("openat", path=str(root / "in" / "a.csv"), flags="O_RDWR|O_TRUNC"), g, p) == [
        {"path": str(root / "in" / "a.csv"), "rights": ["truncate"]}]  # write_file: the link-to-in rule
    assert would_deny(d("unlink", path=str(root / "in" / "a.csv")), g, p) == [
        {"path": str(root / "in"), "rights": ["remove_file"]}]
    assert would_deny(d("connect", family="AF_INET", address="1.2.3.4", port=5432), g, p) == [
        {"port": 5432, "rights": ["connect_tcp"]}]
    assert would_deny(d("connect", family="AF_INET6", address="::1", port=443), g, p) == []


def test_ports(tree):
    _, section = tree
    p = PortGrants(section)
    assert p.allows(443, "connect_tcp") and not p.allows(443, "bind_tcp")
    assert p.allows(8080, "bind_tcp") and not p.allows(22, "connect_tcp")
    assert PortGrants(dict(section, handled_net=[])).allows(22, "connect_tcp")  # ABI < 4: unrestricted


def test_net_access_for():
    assert net_access_for(d("connect", family="AF_INET", port=80)) == (80, "connect_tcp")
    assert net_access_for(d("bind", family="AF_INET6", port=0)) == (0, "bind_tcp")
    udp = {"family": "AF_INET", "type": "SOCK_DGRAM", "protocol": "IPPROTO_UDP"}
    assert net_access_for(d("connect", family="AF_INET", port=53, socket=udp)) is None  # no UDP in Landlock
    assert net_access_for(d("connect", family="AF_UNIX", path="/run/x")) is None
    assert net_access_for(d("sendto", family="AF_INET", port=443, flags="MSG_FASTOPEN")) == (443, "connect_tcp")
    assert net_access_for(d("sendto", family="AF_INET", port=443, flags="0")) is None


def test_a_real_plan_section():
    """A section as compile_plan produces it (examples/tcp-client.yaml): /usr/lib readable and executable,
    connect to its ports only, everything else refused."""
    from sandboxer.manifest.load import load_policy
    from sandboxer.plan import Target, compile_plan

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    plan = compile_plan(load_policy(os.path.join(root, "examples", "tcp-client.yaml")), Target("x86_64", 7))
    g, p = FileGrants(plan["landlock"]), PortGrants(plan["landlock"])
    libc = os.path.realpath("/usr/lib/x86_64-linux-gnu/libc.so.6")
    if os.path.exists(libc):
        assert g.allows(libc, {"read_file", "execute"})
        assert not g.allows(libc, {"write_file"})
    assert not g.allows("/etc/shadow", {"read_file"})
    granted = [r["port"] for r in plan["landlock"]["ports"] if "connect_tcp" in r["access"]]
    assert granted and all(p.allows(port, "connect_tcp") for port in granted)
    assert not p.allows(max(granted) + 1, "connect_tcp")
