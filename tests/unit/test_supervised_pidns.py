"""A supervised run's child is cloned as init of a new PID namespace; a refused namespace refuses the launch."""

from __future__ import annotations

import errno

import pytest

from sandboxer.launch import fork, run, sequence
from sandboxer.launch.errors import LaunchError


class _Prep:
    def __init__(self, own_userns: bool) -> None:
        self.child = sequence.Prepared(parent_pid=1, err_fd=-1, exe=b"/bin/true", argv=None, envp=None)
        self.child.pidns, self.child.own_userns = True, own_userns
        self.v2_procs_fd = 99


@pytest.mark.parametrize(("err", "hint"), [(errno.EPERM, "unprivileged user namespaces"),
                                           (errno.ENOSPC, "user.max_pid_namespaces")])
def test_refused_namespace_is_a_launch_error_with_a_hint(monkeypatch, err, hint):
    calls = []

    def refuse(flags, cgroup_fd=None):
        calls.append((flags, cgroup_fd))
        raise OSError(err, "refused")

    monkeypatch.setattr(fork, "clone", refuse)
    prep = _Prep(own_userns=True)
    with pytest.raises(LaunchError) as exc:
        run._clone_namespace_init(prep, cgroup_fd=7)  # type: ignore[arg-type]
    text = exc.value.render()
    assert "clone3(CLONE_NEWUSER|CLONE_NEWPID) failed" in text and errno.errorcode[err] in text and hint in text
    # Without CLONE_INTO_CGROUP on the second try (the child then joins the v2 leaf itself).
    assert calls == [(fork.CLONE_NEWPID | fork.CLONE_NEWUSER, 7), (fork.CLONE_NEWPID | fork.CLONE_NEWUSER, None)]
    assert prep.child.cgroup_procs_fds == (99,)


def test_root_needs_no_user_namespace(monkeypatch):
    seen = []
    monkeypatch.setattr(fork, "clone", lambda flags, cgroup_fd=None: seen.append((flags, cgroup_fd)) or 4242)
    assert run._clone_namespace_init(_Prep(own_userns=False), None) == 4242  # type: ignore[arg-type]
    assert seen == [(fork.CLONE_NEWPID, None)]


def test_flag_names():
    assert fork.flag_names(fork.CLONE_NEWPID | fork.CLONE_INTO_CGROUP) == "CLONE_NEWPID|CLONE_INTO_CGROUP"


def test_step_names_cover_every_step():
    assert len(sequence.STEP_CALLS) == sequence.EXECVE + 1
    assert "PID namespace" in sequence.STEP_CALLS[sequence.INIT_FORK]
    assert "uid_map" in sequence.STEP_CALLS[sequence.PIDNS]
