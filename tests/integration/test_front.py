"""The native front (sandboxer/launch/front.c): a cached launch image runs without Python, confined exactly as
the Python launcher confines it, and everything else is handed to the Python launcher (root; one rootless case)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandboxer.launch.build_front import compile_front

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="launch integration tests run as root (CI is root)"),
    pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler to build the front"),
]

REPO = Path(__file__).resolve().parents[2]
PY = "/usr/bin/python3"
HOST_NETNS = os.readlink("/proc/self/ns/net")

# The workload: what it may do and what it sees, as one JSON line; exits with argv[1].
PROBE = r"""
import errno, json, os, socket, sys
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
attempt("read_granted", lambda: open(sys.argv[2]).read())
attempt("read_other", lambda: open("/etc/hostname").read())
attempt("write_readonly", lambda: open(os.path.join(os.path.dirname(sys.argv[2]), "new"), "w"))
attempt("tcp_connect", lambda: socket.create_connection(("127.0.0.1", 9), 1))
attempt("exec_other", lambda: os.execv("/bin/true", ["true"]))
status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
out["status"] = {k: status[k].strip() for k in ("CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")}
out["env"] = dict(os.environ)
out["fds"] = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
out["session_leader"] = os.getsid(0) == os.getpid()
out["uid"] = [os.getuid(), os.getgid()]
out["netns_private"] = os.readlink("/proc/self/ns/net") != sys.argv[3]
import resource
out["nofile"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
out["sigmask"] = status["SigBlk"].strip()
print(json.dumps(out, sort_keys=True), flush=True)
sys.exit(int(sys.argv[1]))
"""

MANIFEST = """sandboxer: 1
name: front-probe
extends: [builtin:python3]
imports:
  wasi:filesystem/preopens:
    - {{path: {data}, access: read}}
    - {{path: /proc, access: read}}
  wasi:cli/environment:
    vars: [HOME, LANG]
    set: {{MODE: probe}}
  wasi:cli/stdout: {{}}
  wasi:cli/stderr: {{}}
limits: {{open-files: 64}}
"""


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The front built from this tree, with a sandboxer-py beside it that runs this tree and logs each hand-over."""
    bindir = tmp_path_factory.mktemp("bin")
    compile_front(str(bindir / "sandboxer"))
    (bindir / "sandboxer-py").write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "with open(os.environ['FRONT_LOG'], 'a') as f:\n"
        "    f.write(repr(sys.argv[1:]) + '\\n')\n"
        "from sandboxer.__main__ import main\n"
        "sys.exit(main())\n")
    (bindir / "sandboxer-py").chmod(0o755)
    return bindir / "sandboxer"


class Front:
    """Runs `sandboxer run` through the front with a cache and a hand-over log of its own."""

    def __init__(self, exe: Path, tmp: Path) -> None:
        self.exe, self.log = exe, tmp / "handed-over.log"
        self.env = dict(os.environ, XDG_CACHE_HOME=str(tmp / "cache"), FRONT_LOG=str(self.log), LANG="C.UTF-8",
                        HOME=str(tmp))
        self.data = tmp / "data"
        self.data.mkdir()
        (self.data / "in.txt").write_text("granted\n")
        self.manifest = tmp / "m.yaml"
        self.manifest.write_text(MANIFEST.format(data=self.data))

    def handovers(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0

    def run(self, *cmd: str, opts: tuple[str, ...] = (), manifest: Path | None = None, **kw) -> subprocess.CompletedProcess:
        argv = [str(self.exe), "run", str(manifest if manifest is not None else self.manifest), *opts, "--", *cmd]
        return subprocess.run(argv, env=kw.pop("env", self.env), capture_output=True, text=True, timeout=60, **kw)

    def probe(self, code: int = 0, opts: tuple[str, ...] = (), **kw) -> subprocess.CompletedProcess:
        return self.run(PY, "-c", PROBE, str(code), str(self.data / "in.txt"), HOST_NETNS, opts=opts, **kw)

    def twice(self, *args, **kw) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        """The same run through Python (no image yet: it writes one), then natively (the image); both checked."""
        before = self.handovers()
        first = self.probe(*args, **kw)
        assert self.handovers() == before + 1, "the first run must be the Python launcher's"
        second = self.probe(*args, **kw)
        assert self.handovers() == before + 1, f"the second run must not leave the front: {second.stderr}"
        return first, second


@pytest.fixture
def f(front: Path, tmp_path: Path) -> Front:
    return Front(front, tmp_path)


def test_a_cached_image_runs_without_python_and_confines_exactly_as_the_python_launcher(f: Front) -> None:
    """Same denials (errno), capabilities, no_new_privs, seccomp, environment, fds, rlimits, session, exit code."""
    python, native = f.twice(3)
    assert (python.returncode, native.returncode) == (3, 3)
    assert native.stdout == python.stdout and native.stderr == python.stderr == ""
    seen = json.loads(native.stdout)
    assert seen["read_granted"] == "ok"
    assert seen["read_other"] == "EACCES" and seen["write_readonly"] == "EACCES" and seen["exec_other"] == "EACCES"
    assert seen["tcp_connect"] == "EPERM"  # no wasi:sockets grant: seccomp refuses socket()
    assert seen["netns_private"]  # and a private network namespace
    assert seen["status"] == {"CapEff": "0000000000000000", "CapBnd": "0000000000000000",
                              "CapAmb": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"}
    assert seen["env"] == {"HOME": f.env["HOME"], "LANG": "C.UTF-8", "MODE": "probe"}
    assert seen["fds"] == [0, 1, 2, 3]  # 3: the listing's own directory fd
    assert seen["nofile"] == [64, 64] and seen["session_leader"] and seen["sigmask"] == "0000000000000000"


def test_env_and_keep_fd_options_are_honoured_natively(f: Front) -> None:
    """--env adds or overrides a variable, --keep-fd passes exactly that fd; other fds are closed."""
    r, w = os.pipe()
    try:
        kw = {"pass_fds": (r, w)}
        python, native = f.twice(0, opts=("--env", "MODE=override", "--env", "EXTRA=1", "--keep-fd", str(w)), **kw)
    finally:
        os.close(r)
        os.close(w)
    assert native.stdout == python.stdout
    seen = json.loads(native.stdout)
    assert seen["env"]["MODE"] == "override" and seen["env"]["EXTRA"] == "1"
    assert sorted(seen["fds"]) == sorted({0, 1, 2, 3, w})


def test_exit_codes_and_signals_pass_through(f: Front) -> None:
    f.probe()  # writes the image
    assert f.run(PY, "-c", "import sys; sys.exit(42)").returncode == 42
    assert f.run(PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)").returncode == 128 + 11
    assert f.handovers() == 1


def test_sigterm_to_the_front_reaches_the_workload(f: Front) -> None:
    f.probe()
    script = ("import signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
              "print('ready', flush=True)\n"
              "for _ in range(600):\n"  # short sleeps: a signal landing just before a long one would wait it out
              "    time.sleep(0.05)\n")
    p = subprocess.Popen([str(f.exe), "run", str(f.manifest), "--", PY, "-c", script], env=f.env,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == 7
    assert f.handovers() == 1


def test_the_workloads_process_group_ends_with_it(f: Front, tmp_path: Path) -> None:
    """A background process the workload leaves behind is killed when the workload exits (as supervise.py does)."""
    spawn = tmp_path / "spawn.yaml"
    spawn.write_text(f.manifest.read_text().replace("imports:\n", "imports:\n  sandboxer:process/spawn: {}\n"))
    script = ("import os, sys, time\n"
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    time.sleep(60); os._exit(0)\n"
              "print(pid, flush=True)\n")
    for _ in range(2):
        r = f.run(PY, "-c", script, manifest=spawn)
        assert r.returncode == 0, r.stderr
        pid = int(r.stdout)
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not os.path.exists(f"/proc/{pid}"), "the background child outlived the sandbox"
    assert f.handovers() == 1


def test_an_ignored_sigchld_does_not_lose_the_exit_status(f: Front) -> None:
    """A caller that ignores SIGCHLD (inherited across exec) would have the kernel reap the workload unseen."""
    f.probe()
    ignore = lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # noqa: E731
    assert f.run(PY, "-c", "import sys; sys.exit(3)", preexec_fn=ignore).returncode == 3  # native
    assert f.run(PY, "-c", "import sys; sys.exit(3)", opts=("--stats",), preexec_fn=ignore).returncode == 3  # Python
    assert f.handovers() == 2


def test_keep_fd_must_be_digits_as_python_says(f: Front) -> None:
    f.probe()
    r = f.probe(opts=("--keep-fd", " 5"))
    assert r.returncode == 2 and "--keep-fd expects a file descriptor number" in r.stderr
    assert f.handovers() == 2


def test_the_hand_over_starts_sandboxer_py_as_the_kernel_would(front: Path, tmp_path: Path) -> None:
    """The front does the #! step itself (one exec instead of two): interpreter, its one argument, the script, the
    arguments; pip's /bin/sh trampoline for long interpreter paths works the same way."""
    shutil.copy2(front, tmp_path / "sandboxer")
    script = tmp_path / "sandboxer-py"
    script.write_text("#!/bin/sh   -eu  \nprintf '%s|' \"$0\" \"$-\" \"$@\"\n")
    script.chmod(0o755)
    r = subprocess.run([str(tmp_path / "sandboxer"), "check", "a b", ""], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    path, flags, *args = r.stdout.split("|")[:-1]
    assert path == str(script) and "e" in flags and "u" in flags and args == ["check", "a b", ""]


def test_a_broken_install_that_would_loop_says_so(front: Path, tmp_path: Path) -> None:
    """sandboxer-py being the front itself (a packaging mistake) ends at once with a message, not a busy loop."""
    shutil.copy2(front, tmp_path / "sandboxer")
    shutil.copy2(front, tmp_path / "sandboxer-py")
    r = subprocess.run([str(tmp_path / "sandboxer"), "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 125 and "is not the Python launcher" in r.stderr


@pytest.mark.parametrize("opts", [("--audit", "-"), ("--timeout", "30"), ("--stats",), ("--dry-run",), ("--best-effort",),
                                  ("--env=MODE=x",), ("--no-cache",)])
def test_options_the_front_does_not_know_go_to_python(f: Front, opts: tuple[str, ...]) -> None:
    f.probe()
    before = f.handovers()
    r = f.probe(opts=opts)
    assert r.returncode == 0, r.stderr
    assert f.handovers() == before + 1


def test_a_changed_manifest_or_extended_profile_is_not_served_stale(f: Front, tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("sandboxer: 1\nname: base\nextends: [builtin:python3]\n")
    m = tmp_path / "ext.yaml"
    m.write_text(MANIFEST.format(data=f.data).replace("extends: [builtin:python3]", f"extends: [{base}]"))
    assert f.run(PY, "-c", "pass", manifest=m).returncode == 0
    assert f.run(PY, "-c", "pass", manifest=m).returncode == 0
    assert f.handovers() == 1
    base.write_text(base.read_text() + "description: changed\n")
    assert f.run(PY, "-c", "pass", manifest=m).returncode == 0
    assert f.handovers() == 2  # the profile it extends changed: Python compiles again, and writes a new image
    m.write_text(m.read_text() + "description: changed too\n")
    assert f.run(PY, "-c", "pass", manifest=m).returncode == 0
    assert f.handovers() == 3


def test_a_relative_extends_is_checked_where_it_is_not_where_the_run_started(f: Front, tmp_path: Path) -> None:
    """The image (and the plan cache) record the real path of each extended profile: a run from another directory
    with a stale copy of the profile there must not keep the old grants."""
    proj, other = tmp_path / "proj", tmp_path / "other"
    proj.mkdir()
    other.mkdir()
    granting = "sandboxer: 1\nname: base\nextends: [builtin:python3]\nimports:\n  wasi:filesystem/preopens:\n" \
               "    - {path: /etc/hostname, access: read}\n"
    (proj / "base.yaml").write_text(granting)
    (other / "base.yaml").write_text(granting)  # the stale copy
    (proj / "m.yaml").write_text(MANIFEST.format(data=f.data).replace("extends: [builtin:python3]", "extends: [base.yaml]"))
    read = ("import sys\ntry:\n    open('/etc/hostname').read()\nexcept PermissionError:\n    sys.exit(13)\n")
    assert f.run(PY, "-c", read, manifest=Path("m.yaml"), cwd=proj).returncode == 0
    assert f.run(PY, "-c", read, manifest=Path("m.yaml"), cwd=proj).returncode == 0
    assert f.handovers() == 1
    (proj / "base.yaml").write_text("sandboxer: 1\nname: base\nextends: [builtin:python3]\n")  # tightened
    assert f.run(PY, "-c", read, manifest=Path("../proj/m.yaml"), cwd=other).returncode == 13


def test_a_symlinked_manifest_and_a_repointed_profile_are_not_served_stale(f: Front, tmp_path: Path) -> None:
    """A relative extends: names a file next to the manifest as typed. A symlink to a manifest in another directory
    is another entry (its base.yaml is another file), and a profile symlink pointed elsewhere is a miss."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    granting = "sandboxer: 1\nname: base\nextends: [builtin:python3]\nimports:\n  wasi:filesystem/preopens:\n" \
               "    - {path: /etc/hostname, access: read}\n"
    strict = "sandboxer: 1\nname: base\nextends: [builtin:python3]\n"
    (a / "v1.yaml").write_text(granting)
    (a / "v2.yaml").write_text(strict)
    (a / "base.yaml").symlink_to("v1.yaml")
    (b / "base.yaml").write_text(strict)
    (a / "m.yaml").write_text(MANIFEST.format(data=f.data).replace("extends: [builtin:python3]", "extends: [base.yaml]"))
    (b / "m.yaml").symlink_to(a / "m.yaml")
    read = ("import sys\ntry:\n    open('/etc/hostname').read()\nexcept PermissionError:\n    sys.exit(13)\n")
    for _ in range(2):
        assert f.run(PY, "-c", read, manifest=a / "m.yaml").returncode == 0
    assert f.handovers() == 1
    for _ in range(2):  # b/m.yaml is a's manifest, but its base.yaml is b's: no /etc/hostname
        assert f.run(PY, "-c", read, manifest=b / "m.yaml").returncode == 13
    assert f.handovers() == 2
    (a / "base.yaml").unlink()
    (a / "base.yaml").symlink_to("v2.yaml")
    assert f.run(PY, "-c", read, manifest=a / "m.yaml").returncode == 13
    assert f.handovers() == 3


NOFILE = "import resource; print(*resource.getrlimit(resource.RLIMIT_NOFILE))"


def test_one_file_extended_under_two_names_is_two_inputs(f: Front, tmp_path: Path) -> None:
    """Two names for one file today may be two files tomorrow: each name is re-hashed on every use."""
    (tmp_path / "base.yaml").write_text("sandboxer: 1\nname: base\nextends: [builtin:python3]\n")
    (tmp_path / "strict.yaml").write_text("sandboxer: 1\nname: strict\nlimits: {open-files: 16}\n")
    (tmp_path / "second.yaml").symlink_to("base.yaml")
    m = tmp_path / "two.yaml"
    m.write_text(MANIFEST.format(data=f.data).replace("extends: [builtin:python3]", "extends: [base.yaml, second.yaml]")
                 .replace("limits: {open-files: 64}\n", ""))
    for _ in range(2):
        r = f.run(PY, "-c", NOFILE, manifest=m)
        assert r.returncode == 0 and r.stdout != "16 16\n", r.stderr
    assert f.handovers() == 1
    (tmp_path / "second.yaml").unlink()
    (tmp_path / "second.yaml").symlink_to("strict.yaml")
    assert f.run(PY, "-c", NOFILE, manifest=m).stdout == "16 16\n"


def test_another_install_of_the_same_version_is_not_served_this_ones_plan(f: Front, tmp_path: Path) -> None:
    """builtin: profiles come with the install: a copy whose python3 profile sets open-files 16 must see it, though
    this tree (same version, same cache) compiled the manifest first."""
    assert f.run(PY, "-c", NOFILE).stdout == "64 64\n"
    copy = tmp_path / "install"
    shutil.copytree(REPO / "sandboxer", copy / "sandboxer", ignore=shutil.ignore_patterns("__pycache__"))
    profile = copy / "sandboxer" / "profiles" / "python3.yaml"
    profile.write_text(profile.read_text() + "limits: {open-files: 16}\n")
    m = tmp_path / "plain.yaml"
    m.write_text(MANIFEST.format(data=f.data).replace("limits: {open-files: 64}\n", ""))
    launcher = f"import sys; sys.path.insert(0, {str(copy)!r}); from sandboxer.__main__ import main; main()"
    for install in ([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                     "from sandboxer.__main__ import main; main()"], [sys.executable, "-c", launcher]):
        r = subprocess.run([*install, "run", str(m), "--", PY, "-c", NOFILE], env=f.env, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
    assert r.stdout == "16 16\n"


def test_only_an_isolated_launcher_writes_images(f: Front, front: Path) -> None:
    """With PYTHONPATH another copy of sandboxer could compile: only the interpreter the front starts with -I
    (which imports the package installed with it) may leave an image for that front."""
    images = Path(f.env["XDG_CACHE_HOME"]) / "sandboxer" / "images"
    launcher = f"import sys; sys.path.insert(0, {str(REPO)!r}); from sandboxer.__main__ import main; main()"
    env = dict(f.env, SANDBOXER_FROM_FRONT=str(front.parent))
    for flags, written in (((), False), (("-I",), True)):
        r = subprocess.run([sys.executable, *flags, "-c", launcher, "run", str(f.manifest), "--", PY, "-c", "pass"],
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert images.exists() == written


def test_a_repointed_directory_under_an_unchanged_profile_is_a_miss(f: Front, tmp_path: Path) -> None:
    """lnk/base.yaml is byte for byte the same in d1 and d2, but its relative extends: resolve from lnk."""
    for d, limit in (("d1", 64), ("d2", 16)):
        (tmp_path / d).mkdir()
        (tmp_path / d / "base.yaml").write_text("sandboxer: 1\nname: base\nextends: [inner.yaml]\n")
        (tmp_path / d / "inner.yaml").write_text(
            f"sandboxer: 1\nname: inner\nextends: [builtin:python3]\nlimits: {{open-files: {limit}}}\n")
    (tmp_path / "lnk").symlink_to("d1")
    m = tmp_path / "dir.yaml"
    m.write_text(MANIFEST.format(data=f.data).replace("extends: [builtin:python3]", "extends: [lnk/base.yaml]")
                 .replace("limits: {open-files: 64}\n", ""))
    for _ in range(2):
        assert f.run(PY, "-c", NOFILE, manifest=m).stdout == "64 64\n"
    assert f.handovers() == 1
    (tmp_path / "lnk").unlink()
    (tmp_path / "lnk").symlink_to("d2")
    assert f.run(PY, "-c", NOFILE, manifest=m).stdout == "16 16\n"


def test_a_manifest_name_python_would_refuse_is_refused(f: Front) -> None:
    """"m.yaml/" is not m.yaml: the front reads the manifest by the name typed, as Python does."""
    f.probe()
    r = f.run(PY, "-c", "pass", manifest=str(f.manifest) + "/")  # type: ignore[arg-type] - a str keeps the slash
    assert r.returncode == 2 and "cannot read manifest" in r.stderr and f.handovers() == 2


def test_an_image_in_a_cache_others_can_write_is_not_used(f: Front) -> None:
    f.probe()
    images = Path(f.env["XDG_CACHE_HOME"]) / "sandboxer" / "images"
    images.chmod(0o777)
    try:
        r = f.probe()
        assert r.returncode == 0 and f.handovers() == 2
        assert "not using the cache" in r.stderr
    finally:
        images.chmod(0o700)


def test_a_damaged_or_foreign_image_is_not_used(f: Front) -> None:
    """A truncated image, or one made for another user, goes to Python, which replaces it."""
    f.probe()
    images = Path(f.env["XDG_CACHE_HOME"]) / "sandboxer" / "images"
    (image,) = images.iterdir()
    data = image.read_bytes()
    image.write_bytes(data[:-3])
    assert f.probe().returncode == 0 and f.handovers() == 2
    assert image.read_bytes() == data  # rewritten
    image.write_bytes(data[:8] + (12345).to_bytes(4, "little") + data[12:])
    assert f.probe().returncode == 0 and f.handovers() == 3
    assert f.probe().returncode == 0 and f.handovers() == 3


def test_failures_are_explained_by_the_python_launcher(f: Front, tmp_path: Path) -> None:
    """Command not found, not granted, and a child that fails at execve (a missing #! interpreter) all say
    what Python says, with its exit code."""
    f.probe()
    r = f.run("no-such-command")
    assert r.returncode == 127 and "command not found" in r.stderr
    r = f.run("/bin/true")
    assert r.returncode == 125 and "does not let the sandbox execute" in r.stderr
    script = f.data / "script"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    m = tmp_path / "exec.yaml"
    m.write_text(f.manifest.read_text().replace(f"{{path: {f.data}, access: read}}", f"{{path: {f.data}, access: exec}}"))
    assert f.run(PY, "-c", "pass", manifest=m).returncode == 0  # its image
    before = f.handovers()
    r = f.run(str(script), manifest=m)
    assert r.returncode == 127 and "execve(" in r.stderr and "ENOENT" in r.stderr, r.stderr
    assert f.handovers() == before + 1  # the front's child failed before execve: handed over, nothing ran twice


def test_a_plan_with_cgroup_limits_or_a_wall_time_never_gets_an_image(f: Front, tmp_path: Path) -> None:
    m = tmp_path / "wall.yaml"
    m.write_text(f.manifest.read_text().replace("limits: {open-files: 64}", "limits: {open-files: 64, wall-time: 30s}"))
    for _ in range(2):
        assert f.run(PY, "-c", "pass", manifest=m).returncode == 0
    assert f.handovers() == 2
    assert not (Path(f.env["XDG_CACHE_HOME"]) / "sandboxer" / "images").exists()


def test_rootless_the_front_runs_an_image_in_its_own_user_and_network_namespace(front: Path) -> None:
    """As nobody: the first run (Python) writes the image into nobody's cache, the second runs it natively."""
    import tempfile

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    top = Path(tempfile.mkdtemp(prefix="sandboxer-front-"))  # tmp_path is root's 0700: nobody could not reach it
    try:
        top.chmod(0o755)
        for name in ("sandboxer", "sandboxer-py"):
            shutil.copy2(front.parent / name, top / name)
        home = top / "home"
        home.mkdir()
        f = Front(top / "sandboxer", home)
        for p in home.rglob("*"):
            os.chown(p, 65534, 65534)
        os.chown(home, 65534, 65534)
        setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        tail = ["run", str(f.manifest), "--", PY, "-c", PROBE, "0", str(f.data / "in.txt"), HOST_NETNS]
        # The Python run is started by setpriv itself: this venv's interpreter lies under /root, which nobody
        # cannot search, so the front could not start it (setpriv's own exec still can).
        launcher = f"import sys; sys.path.insert(0, {str(REPO)!r}); from sandboxer.__main__ import main; main()"
        python = subprocess.run([*setpriv, sys.executable, "-I", "-c", launcher, *tail], cwd=REPO,
                                env=dict(f.env, SANDBOXER_FROM_FRONT=str(top)),  # as the front hands a run over
                                capture_output=True, text=True, timeout=60)
        native = subprocess.run([*setpriv, str(f.exe), *tail], env=f.env, capture_output=True, text=True, timeout=60)
        assert python.returncode == native.returncode == 0, (python.stderr, native.stderr)
        assert f.handovers() == 0
        assert native.stdout == python.stdout
        seen = json.loads(native.stdout)
        assert seen["uid"] == [65534, 65534] and seen["netns_private"]
        assert seen["read_other"] == "EACCES" and seen["status"]["CapBnd"] == "0000000000000000"
    finally:
        shutil.rmtree(top)


def test_the_python_launcher_alone_writes_no_image(f: Front) -> None:
    """Only a run the front handed over leaves an image: without the front nobody would read it."""
    env = {k: v for k, v in f.env.items() if k != "FRONT_LOG"}
    r = subprocess.run([sys.executable, "-m", "sandboxer", "run", str(f.manifest), "--", PY, "-c", "pass"], env=env,
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not (Path(f.env["XDG_CACHE_HOME"]) / "sandboxer" / "images").exists()


NET_PROBE = r"""
import errno, json, socket, sys
out = {}
for port in sys.argv[1:]:
    s = socket.socket()
    try:
        s.settimeout(2)
        s.connect(("127.0.0.1", int(port)))
        out[port] = "ok"
    except OSError as e:
        out[port] = errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
print(json.dumps(out, sort_keys=True))
"""


@pytest.mark.parametrize("network", ["host", "loopback"])
def test_tcp_port_rules_hold_natively(f: Front, tmp_path: Path, network: str) -> None:
    """Landlock's connect rule: the granted port connects (host network) or is refused by nobody listening
    (a private loopback), the other port is EACCES; stdin, not granted, reads as /dev/null."""
    import socket

    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    try:
        granted, other = (str(s.getsockname()[1]) for s in servers)
        m = tmp_path / "net.yaml"
        m.write_text(f.manifest.read_text().replace(
            "imports:\n", f"network: {network}\nimports:\n  wasi:sockets/tcp: {{connect: [{granted}]}}\n"))
        runs = [f.run(PY, "-c", NET_PROBE + "print(repr(sys.stdin.read()))", granted, other, manifest=m,
                      input="not for the workload") for _ in range(2)]
    finally:
        for s in servers:
            s.close()
    assert f.handovers() == 1 and runs[0].returncode == runs[1].returncode == 0, runs[1].stderr
    assert runs[0].stdout == runs[1].stdout
    seen = json.loads(runs[1].stdout.splitlines()[0])
    assert seen == {granted: "ok" if network == "host" else "ECONNREFUSED", other: "EACCES"}
    assert runs[1].stdout.splitlines()[1] == "''"


def test_the_installed_front_runs_images_of_the_package_installed_with_it(tmp_path: Path) -> None:
    """pip install built the front with the package's build id: the second run of a limit-less manifest is the
    front's own (the workload's parent is the front, not the Python launcher)."""
    installed = Path(sys.executable).parent / "sandboxer"
    if not installed.exists() or installed.read_bytes()[:4] != b"\x7fELF":
        pytest.skip(f"{installed} is not the native front (installed without a C compiler, or not installed)")
    m = tmp_path / "m.yaml"
    m.write_text("sandboxer: 1\nname: parent\nextends: [builtin:python3]\nimports:\n  wasi:filesystem/preopens:\n"
                 "    - {path: /proc, access: read}\n  wasi:cli/stdout: {}\n")
    parent = "import os; print(open(f'/proc/{os.getppid()}/comm').read().strip())"  # exe: Landlock refuses ptrace
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    seen = [subprocess.run([str(installed), "run", str(m), "--", PY, "-c", parent], env=env, capture_output=True,
                           text=True, timeout=60) for _ in range(2)]
    assert [r.returncode for r in seen] == [0, 0], seen[1].stderr
    assert seen[0].stdout.startswith("python") and seen[1].stdout == "sandboxer\n"


def test_a_script_sees_the_same_name_natively(f: Front, tmp_path: Path) -> None:
    """The path handed to execve (so a #! interpreter's $0) is folded alike: ./s.sh is <dir>/s.sh both ways."""
    script = f.data / "s.sh"
    script.write_text('#!/bin/sh\necho "$0"\n')
    script.chmod(0o755)
    m = tmp_path / "sh.yaml"
    m.write_text(MANIFEST.format(data=f.data).replace("extends: [builtin:python3]", "extends: [builtin:shell]")
                 .replace(f"{{path: {f.data}, access: read}}", f"{{path: {f.data}, access: exec}}"))
    runs = [f.run("./s.sh", manifest=m, cwd=f.data) for _ in range(2)]
    assert f.handovers() == 1 and runs[0].returncode == runs[1].returncode == 0, runs[1].stderr
    assert runs[0].stdout == runs[1].stdout == f"{script}\n"


def test_a_manifest_name_that_is_not_utf8_works_both_ways(f: Front, tmp_path: Path) -> None:
    name = os.fsdecode(bytes(tmp_path) + b"/m\xff.yaml")
    Path(name).write_text(f.manifest.read_text())
    runs = [f.run(PY, "-c", "print('ok')", manifest=name) for _ in range(2)]  # type: ignore[arg-type]
    assert [r.stdout for r in runs] == ["ok\n", "ok\n"] and f.handovers() == 1, runs[0].stderr


def test_a_front_started_with_stdin_closed_hands_over(f: Front) -> None:
    """fd 0 closed: /dev/null or the report pipe would take its number; Python handles that run."""
    f.probe()
    r = f.run(PY, "-c", "print('ran')", preexec_fn=lambda: os.close(0))
    assert r.stdout == "ran\n" and f.handovers() == 2
