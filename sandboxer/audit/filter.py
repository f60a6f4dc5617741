"""Audit, compile side (pure): the plan's seccomp section → the program a supervised run installs.

A supervised run (`--audit`, or complain mode) installs a variant of the plan's filter in which
every call the plan refuses returns SECCOMP_RET_USER_NOTIF instead of its action: the supervisor
records it, then answers with what the plan's own program would have done (errno, kill, or, in
complain mode, let it run). Allowed calls never reach the supervisor, with one exception: in complain
mode Landlock is not applied (it has no log-only mode), so the calls whose file or port access
Landlock would check are notified too, and the supervisor compares each with the grants.

The decision always comes from running the plan's own program (mechanisms/seccomp/emulator) on the
notified call, never from arguments read out of the workload's memory (those are evidence only).
"""

from __future__ import annotations

from sandboxer.mechanisms.seccomp.bpf import assemble

# The calls whose access Landlock checks (files: path-beneath rights; network: TCP ports), observed
# in complain mode. Calls on an already open fd (ftruncate, ioctl on devices) are not: Landlock
# decided those when the fd was opened, and that open was observed.
OBSERVED = frozenset(
    "open openat openat2 creat execve execveat truncate mkdir mkdirat mknod mknodat rmdir unlink "
    "unlinkat rename renameat renameat2 link linkat symlink symlinkat bind connect".split()
)


def notify_section(section: dict, *, complain: bool) -> dict:
    """The section with refusals (and, in complain mode, the observed calls) turned into notifications.

    Refusals are the plan's `violation` action plus, in complain mode, every explicit errno:EPERM: the
    compiler keeps those for what no capability grants even there (ptrace, mount, TIOCSTI, clone with
    CLONE_NEW*…): they are recorded, then still refused. Designed fallbacks that are not violations
    (clone3 → ENOSYS so libc uses clone, unknown numbers → ENOSYS) stay as they are.
    """
    syscalls = []
    for entry in section["syscalls"]:
        e = dict(entry)
        if complain and e["action"] == "errno:EPERM":
            e["action"] = "violation"
        if e.get("rules"):
            e["rules"] = [dict(r, action="violation") if complain and r["action"] == "errno:EPERM" else r
                          for r in e["rules"]]
        elif complain and e["action"] == "allow" and e["name"] in OBSERVED:
            e["action"] = "notify"
        syscalls.append(e)
    return dict(section, syscalls=syscalls)


def notify_program(section: dict, *, complain: bool) -> bytes:
    """The BPF program of a supervised run (see notify_section)."""
    return assemble(notify_section(section, complain=complain), violation="notify")
