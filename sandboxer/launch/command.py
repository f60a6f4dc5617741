"""Launch stage, parent side: find the file argv[0] names, and refuse one the plan would not let the child execute.

Search rules follow execvp(3): a name with a slash is used as is; otherwise each PATH entry is
tried in order (an empty entry is the current directory). PATH is the one the workload will get,
or the launcher's own when the plan does not pass PATH. When the plan's Landlock section handles
`execute`, a candidate counts only if a path rule with `execute` covers its real file (Landlock
checks the file a symlink points to, so the check uses os.path.realpath on both sides).
"""

from __future__ import annotations

import os
import stat

from sandboxer.errors import EXIT_LAUNCH, EXIT_NOEXEC, EXIT_NOTFOUND
from sandboxer.paths import absolute  # as execve resolves it: "link/.." is not folded as text
from sandboxer.launch.errors import LaunchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

# The grants whose `at` a user edits to add an exec path, most specific first.
_GRANTS_TO_EDIT = ("wasi:filesystem/preopens", "sandboxer:process/spawn")


class ExecGrant:
    """One plan path with the execute right: as written, as Landlock will see it, and its manifest line."""

    def __init__(self, path: str, real: str, at: str | None) -> None:
        self.path = path
        self.real = real
        self.at = at

    def covers(self, real_file: str) -> bool:
        return real_file == self.real or real_file.startswith(self.real.rstrip("/") + "/")


class ResolvedCommand:
    """The file to execve, its real path, and the directories that were searched to find it."""

    def __init__(self, path: str, real: str, searched: tuple[str, ...] = ()) -> None:
        self.path = path
        self.real = real
        self.searched = searched


def exec_grants(plan: Mapping[str, Any]) -> list[ExecGrant] | None:
    """The plan's exec-granted paths, or None when its Landlock section does not restrict execution."""
    section = plan.get("landlock") or {}
    if "execute" not in section.get("handled_fs", ()):
        return None
    return [
        ExecGrant(rule["path"], os.path.realpath(rule["path"]), rule.get("at"))
        for rule in section.get("paths", ())
        if "execute" in rule.get("access", ())
    ]


def _nearest_at(plan: Mapping[str, Any], real_file: str) -> str | None:
    """The `at` of the deepest plan path above `real_file`, else of the grant that lists exec paths."""
    best: tuple[int, str] | None = None
    for rule in (plan.get("landlock") or {}).get("paths", ()):
        real = os.path.realpath(rule["path"])
        if rule.get("at") and (real_file == real or real_file.startswith(real.rstrip("/") + "/")):
            if best is None or len(real) > best[0]:
                best = (len(real), rule["at"])
    if best:
        return best[1]
    for capability in _GRANTS_TO_EDIT:
        for grant in plan.get("grants", ()):
            if grant.get("capability") == capability and grant.get("at"):
                return grant["at"]
    return None


def _not_granted(plan: Mapping[str, Any], name: str, path: str, real: str) -> LaunchError:
    at = _nearest_at(plan, real)
    found = f" (found as '{name}' on PATH)" if "/" not in name else ""
    link = f"; it is a symlink to {real}, the file Landlock checks" if real != path else ""
    where = f" ({at})" if at else ""
    return LaunchError(
        f"the manifest does not let the sandbox execute {path}{found}{link}.\n"
        f"           Add {{path: {path}, access: exec}} to wasi:filesystem/preopens{where}.",
        EXIT_LAUNCH,
    )


def _kind(path: str) -> str:
    """"missing", "dir", "noexec" or "ok" for a candidate file (following symlinks, as execve does)."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if not stat.S_ISREG(st.st_mode) or not os.access(path, os.X_OK):
        return "noexec"
    return "ok"


def _search_path(env: Mapping[str, str], launcher_env: Mapping[str, str]) -> str:
    if "PATH" in env:
        return env["PATH"]
    return launcher_env.get("PATH", os.defpath)


def resolve_command(
    name: str,
    plan: Mapping[str, Any],
    env: Mapping[str, str],
    launcher_env: Mapping[str, str] | None = None,
    *,
    check_grants: bool = True,  # False in complain mode: an ungranted command is a would-be violation, recorded
) -> ResolvedCommand:
    """Resolve argv[0] to the absolute path the child will execve; raise LaunchError 127 / 126 / 125."""
    if not name:
        raise LaunchError("no command given", EXIT_NOTFOUND)
    grants = exec_grants(plan) if check_grants else None

    def granted(real: str) -> bool:
        return grants is None or any(g.covers(real) for g in grants)

    if "/" in name:
        path = absolute(name)
        kind = _kind(path)
        if kind == "missing":
            raise LaunchError(f"{name}: command not found (no such file)", EXIT_NOTFOUND)
        if kind == "dir":
            raise LaunchError(f"{name}: is a directory, not an executable file", EXIT_NOEXEC)
        if kind == "noexec":
            raise LaunchError(f"{name}: not executable (permission denied)", EXIT_NOEXEC)
        real = os.path.realpath(path)
        if not granted(real):
            raise _not_granted(plan, name, path, real)
        return ResolvedCommand(path, real)

    search = _search_path(env, os.environ if launcher_env is None else launcher_env)
    dirs = tuple(search.split(":"))
    not_exec: str | None = None
    not_granted: tuple[str, str] | None = None
    for d in dirs:
        path = absolute(os.path.join(d or ".", name))
        kind = _kind(path)
        if kind == "ok":
            real = os.path.realpath(path)
            if granted(real):
                return ResolvedCommand(path, real, dirs)
            not_granted = not_granted or (path, real)
        elif kind != "missing":
            not_exec = not_exec or path
    if not_granted:
        raise _not_granted(plan, name, *not_granted)
    if not_exec:
        raise LaunchError(f"{name}: found {not_exec}, but it is not an executable file", EXIT_NOEXEC)
    shown = ", ".join(d or "." for d in dirs) if search else "nothing (PATH is empty)"
    raise LaunchError(f"{name}: command not found; searched {shown}", EXIT_NOTFOUND)
