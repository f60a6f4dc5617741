"""Read-only: which seccomp features and return actions this kernel offers."""

from __future__ import annotations


def probe_seccomp(actions_file: str = "/proc/sys/kernel/seccomp/actions_avail") -> dict:
    try:
        with open(actions_file) as f:
            actions = f.read().split()
    except OSError:
        actions = []
    return {"filter": bool(actions), "user_notif": "user_notif" in actions, "actions": actions}
