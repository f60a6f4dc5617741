"""WASI modules and components run under a manifest: grants honoured, denials with WASI errnos, limits stop runaways."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WASM = REPO / "tests" / "wasm"
SANDBOXER = [sys.executable, "-m", "sandboxer"]

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="the manifests' cgroup limits need root"),
              pytest.mark.skipif(pytest.importorskip("wasmtime") is None, reason="wasmtime is not installed")]

# WASI preview 1 errno values (wasi-libc's <errno.h>)
WASI_ENOENT, WASI_EPERM = 44, 63


def write_manifest(tmp_path: Path, imports: str, limits: str = "{memory: 64Mi, pids: 4, wall-time: 20s}") -> Path:
    m = tmp_path / "wasm.yaml"
    m.write_text(f"sandboxer: 1\nname: wasm-test\ndescription: a WASI test program\n"
                 f"imports:\n{imports}limits: {limits}\n")
    return m


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "allowed.txt").write_text("allowed content\n")
    (tmp_path / "secret.txt").write_text("secret\n")
    return {"ro": ro, "rw": rw, "root": tmp_path}


def fs_manifest(tmp_path: Path, dirs: dict[str, Path], **kw) -> Path:
    return write_manifest(tmp_path, (
        "  wasi:filesystem/preopens:\n"
        f"    - {{path: {dirs['ro']}, access: read}}\n"
        f"    - {{path: {dirs['rw']}, access: read+write}}\n"
        "  wasi:cli/stdout: {}\n  wasi:cli/stderr: {}\n"), **kw)


def run(m: Path, *cmd: str, options: tuple[str, ...] = (), env: dict | None = None, timeout: float = 60):
    return subprocess.run([*SANDBOXER, "run", str(m), *options, "--", *cmd], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout, env=env)


def test_allowed_file_is_read(tmp_path, dirs):
    """A preview 1 module reads a file inside its read-only preopen."""
    r = run(fs_manifest(tmp_path, dirs), str(WASM / "readfile.wasm"), str(dirs["ro"] / "allowed.txt"))
    assert (r.returncode, r.stdout, r.stderr) == (0, "allowed content\n", "")


def test_file_outside_every_preopen_is_enoent(tmp_path, dirs):
    """A path outside every preopen does not exist for the module: WASI ENOENT, the module's own exit 1."""
    r = run(fs_manifest(tmp_path, dirs), str(WASM / "readfile.wasm"), str(dirs["root"] / "secret.txt"))
    assert (r.returncode, r.stderr) == (1, f"errno {WASI_ENOENT} No such file or directory\n")


def test_dotdot_escape_from_preopen_is_eperm(tmp_path, dirs):
    """`..` out of a preopen is refused by the runtime with WASI EPERM."""
    r = run(fs_manifest(tmp_path, dirs), str(WASM / "readfile.wasm"), f"{dirs['ro']}/../secret.txt")
    assert (r.returncode, r.stderr) == (1, f"errno {WASI_EPERM} Operation not permitted\n")


def test_write_to_read_only_preopen_is_eperm(tmp_path, dirs):
    """Read-only stays read-only: creating a file in the read preopen fails with WASI EPERM, nothing is written."""
    r = run(fs_manifest(tmp_path, dirs), str(WASM / "writefile.wasm"), str(dirs["ro"] / "new.txt"), "hi")
    assert (r.returncode, r.stderr) == (1, f"errno {WASI_EPERM} Operation not permitted\n")
    assert not (dirs["ro"] / "new.txt").exists()


def test_write_to_read_write_preopen(tmp_path, dirs):
    """The read+write preopen takes a new file."""
    r = run(fs_manifest(tmp_path, dirs), str(WASM / "writefile.wasm"), str(dirs["rw"] / "new.txt"), "hi")
    assert r.returncode == 0, r.stderr
    assert (dirs["rw"] / "new.txt").read_text() == "hi"


def test_runaway_loop_stopped_by_wall_time(tmp_path, dirs):
    """An endless loop is stopped at limits.wall-time by the epoch deadline: exit 137, as a native kill."""
    m = fs_manifest(tmp_path, dirs, limits="{memory: 64Mi, wall-time: 1s}")
    r = run(m, str(WASM / "loop.wasm"))
    assert r.returncode == 137
    assert r.stderr == "sandboxer: wall time of 1 s exceeded: the module was stopped (epoch deadline)\n"


def test_timeout_option_stops_loop(tmp_path, dirs):
    """--timeout shortens the deadline for a module as it does for a native command."""
    r = run(fs_manifest(tmp_path, dirs), str(WASM / "loop.wasm"), options=("--timeout", "0.5"))
    assert r.returncode == 137 and "wall time of 0.5 s exceeded" in r.stderr


def test_timeout_option_has_a_native_backstop_for_a_guest_asleep_in_the_host(tmp_path):
    """--timeout is an epoch deadline in the runtime, which a guest blocked in poll_oneoff never reaches: the native
    kill a grace period later ends it (so a run with --timeout is supervised, never in place)."""
    m = write_manifest(tmp_path, "  wasi:clocks/monotonic-clock: {}\n  wasi:cli/stderr: {}\n", limits="{open-files: 64}")
    started = time.monotonic()
    r = run(m, str(WASM / "nap.wasm"), options=("--timeout", "1"), timeout=30)
    assert r.returncode == 137 and time.monotonic() - started < 10, r.stderr
    assert r.stderr == ("sandboxer: wall time of 1 s exceeded; 2 s later it had not stopped by itself: "
                        "the sandbox was killed\n")


def test_memory_hog_stopped_by_memory_limit(tmp_path, dirs):
    """Linear memory cannot grow past limits.memory: the hog's allocator fails and it is reported as the limit (137)."""
    m = fs_manifest(tmp_path, dirs, limits="{memory: 32Mi, wall-time: 20s}")
    r = run(m, str(WASM / "hog.wasm"))
    assert r.returncode == 137
    assert "sandboxer: memory limit of 33554432 bytes reached" in r.stderr
    assert "hog: malloc failed after" in r.stderr


def test_environment_allow_list(tmp_path):
    """Only the listed variables (and --env) reach the module."""
    m = write_manifest(tmp_path, "  wasi:cli/environment: {vars: [LANG]}\n  wasi:cli/stdout: {}\n")
    env = dict(os.environ, LANG="C.UTF-8", SECRET_TOKEN="x")
    r = run(m, str(WASM / "env.wasm"), options=("--env", "EXTRA=1"), env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["EXTRA=1", "LANG=C.UTF-8"]


def test_ungranted_stdout_is_discarded(tmp_path):
    """Without wasi:cli/stdout the module's output goes nowhere and it still succeeds."""
    m = write_manifest(tmp_path, "  wasi:cli/stderr: {}\n")
    r = run(m, str(WASM / "hello.wasm"))
    assert (r.returncode, r.stdout) == (0, "")


def test_undeclared_import_refused_before_run(tmp_path):
    """A module importing environ_get under a manifest without wasi:cli/environment is refused (exit 2), with the line to add."""
    m = write_manifest(tmp_path, "  wasi:cli/stdout: {}\n")
    r = run(m, str(WASM / "env.wasm"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"sandboxer: {WASM / 'env.wasm'} imports what {m} does not grant:\n"
                               "  wasi:cli/environment, needed by wasi_snapshot_preview1.environ_get, "
                               "wasi_snapshot_preview1.environ_sizes_get\n"
                               "      add under imports:  wasi:cli/environment: {vars: [NAME]}\n")


def test_best_effort_runs_with_enotcapable(tmp_path):
    """--best-effort runs the module anyway; the ungranted function answers ENOTCAPABLE (wasi-libc exits 71)."""
    m = write_manifest(tmp_path, "  wasi:cli/stdout: {}\n")
    r = run(m, str(WASM / "env.wasm"), options=("--best-effort",))
    assert r.returncode == 71 and r.stdout == ""
    assert "running anyway (--best-effort)" in r.stderr


def test_component_runs_with_environment(tmp_path):
    """The WASI 0.2 component (built from a WIT world) runs, prints, and sees only the allowed variable."""
    m = write_manifest(tmp_path, "  wasi:cli/environment: {vars: [LANG]}\n  wasi:cli/stdout: {}\n")
    r = run(m, str(WASM / "greet.component.wasm"), env=dict(os.environ, LANG="C", OTHER="no"))
    assert (r.returncode, r.stdout) == (0, "hello from a component\nLANG=C\n"), r.stderr


def test_component_import_refused(tmp_path):
    """A component importing wasi:cli/environment@0.2.0 is refused when the manifest lacks it."""
    m = write_manifest(tmp_path, "  wasi:cli/stdout: {}\n")
    r = run(m, str(WASM / "greet.component.wasm"))
    assert r.returncode == 2
    assert "  wasi:cli/environment, needed by wasi:cli/environment@0.2.0\n" in r.stderr


def test_check_wasm_without_running(tmp_path):
    """`check MANIFEST --wasm MODULE` reports the same missing capability and exits 2; 0 when granted."""
    bad = write_manifest(tmp_path, "  wasi:cli/stdout: {}\n")
    r = subprocess.run([*SANDBOXER, "check", str(bad), "--wasm", str(WASM / "clock.wasm")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    for cap in ("wasi:clocks/wall-clock", "wasi:clocks/monotonic-clock", "wasi:random/random"):
        assert f"add under imports:  {cap}: {{}}" in r.stderr
    r = subprocess.run([*SANDBOXER, "check", str(bad), "--wasm", str(WASM / "hello.wasm")],
                       capture_output=True, text=True, cwd=REPO)
    assert (r.returncode, r.stdout) == (0, f"{bad}: ok (grants every import of {WASM / 'hello.wasm'})\n")


@pytest.mark.parametrize("source", ["--from-wasm=greet.component.wasm", "--from-wit=wit/world.wit",
                                    "--from-wasm=clock.wasm"])
def test_init_output_passes_check_and_runs(tmp_path, source):
    """`init` writes a skeleton that `check` accepts and under which the module runs."""
    flag, _, rel = source.partition("=")
    out = tmp_path / "init.yaml"
    r = subprocess.run([*SANDBOXER, "init", flag, str(WASM / rel), "-o", str(out)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    module = WASM / ("greet.component.wasm" if "greet" in rel or "wit" in rel else rel)
    r = subprocess.run([*SANDBOXER, "check", str(out), "--wasm", str(module)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    r = run(out, str(module))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("hello from a component\n" if "greet" in module.name else "time ")


def test_init_refuses_to_overwrite(tmp_path):
    """-o never overwrites an existing file."""
    out = tmp_path / "x.yaml"
    out.write_text("keep")
    r = subprocess.run([*SANDBOXER, "init", "--from-wasm", str(WASM / "hello.wasm"), "-o", str(out)],
                       capture_output=True, text=True, cwd=REPO)
    assert (r.returncode, out.read_text()) == (2, "keep")


def test_second_run_uses_the_module_cache(tmp_path, dirs):
    """The first run stores the compiled module under $XDG_CACHE_HOME/sandboxer/wasm; later runs load it."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    m = fs_manifest(tmp_path, dirs)
    assert run(m, str(WASM / "hello.wasm"), env=env).stdout == "hello from wasm\n"
    entries = list((tmp_path / "cache" / "sandboxer" / "wasm").glob("*/module.cwasm"))
    assert len(entries) == 1
    stamp = entries[0].stat().st_mtime_ns
    assert run(m, str(WASM / "hello.wasm"), env=env).stdout == "hello from wasm\n"
    assert entries[0].stat().st_mtime_ns == stamp


# The host runs forked (a plan with cgroup limits or a wall time needs a parent) or in place (nothing to supervise).
HOST_MODES = pytest.mark.parametrize("limits", ["{memory: 64Mi, pids: 4, wall-time: 20s}", "{open-files: 64}"],
                                     ids=["forked", "in-place"])


def _launch_body(tmp_path: Path, dirs: dict[str, Path], body: str, limits: str,
                 edit_host: str = "") -> subprocess.CompletedProcess:
    """Run `body` (Python source defining body() -> int) as the launcher's body under the derived host plan
    (changed first by `edit_host`, Python source that may alter `host`).

    This is how sandboxer.wasm.run starts the wasmtime host: the native launcher forks (or, with nothing
    to supervise, stays in place), takes every confinement step, then calls the body instead of execve.
    """
    script = (
        "import sys\n"
        "from sandboxer.runner import load_plan\n"
        "from sandboxer.launch.run import launch, LaunchOptions\n"
        "from sandboxer.wasm.host_plan import derive_host_plan\n"
        "plan, _bpf, _, _ = load_plan(sys.argv[1])\n"
        "host, bpf = derive_host_plan(plan)\n"
        f"{edit_host}\n"
        f"{body}\n"
        "sys.exit(launch(host, bpf, [sys.argv[2]], LaunchOptions(), body=body))\n"
    )
    m = fs_manifest(tmp_path, dirs, limits=limits)
    return subprocess.run([sys.executable, "-c", script, str(m), str(WASM / "hello.wasm")],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


@HOST_MODES
def test_host_process_is_confined(tmp_path, dirs, limits):
    """Defence in depth: the host, after the launcher's steps, cannot read a file outside the grants."""
    r = _launch_body(tmp_path, dirs, limits=limits, body=(
        "import os\n"
        "def body():\n"
        f"    print(open({str(dirs['ro'] / 'allowed.txt')!r}).read(), end='', flush=True)\n"
        "    try:\n"
        f"        open({str(dirs['root'] / 'secret.txt')!r})\n"
        "    except PermissionError:\n"
        "        return 13\n"
        "    return 0\n"))
    assert (r.returncode, r.stdout) == (13, "allowed content\n"), r.stderr


@HOST_MODES
def test_host_cannot_execve(tmp_path, dirs, limits):
    """The host's seccomp filter refuses execve whatever the manifest grants (EPERM from seccomp, not Landlock's EACCES)."""
    r = _launch_body(tmp_path, dirs, limits=limits, body=(
        "import os, errno\n"
        "def body():\n"
        "    try:\n"
        "        os.execv('/bin/sh', ['sh', '-c', 'exit 0'])\n"
        "    except OSError as e:\n"
        "        return 13 if e.errno == errno.EPERM else 14\n"
        "    return 0\n"))
    assert r.returncode == 13, r.stderr


def test_host_child_is_confined_while_running(tmp_path, dirs):
    """While a module runs, the host is a forked child of `sandboxer run` (same cmdline: no exec, no second
    interpreter) with no_new_privs, a seccomp filter and no capabilities."""
    m = fs_manifest(tmp_path, dirs, limits="{memory: 64Mi, wall-time: 20s}")
    proc = subprocess.Popen([*SANDBOXER, "run", str(m), "--", str(WASM / "loop.wasm")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        status = None
        for _ in range(200):
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            if children:
                status = Path(f"/proc/{children[0]}/status").read_text()
                cmdline = Path(f"/proc/{children[0]}/cmdline").read_bytes()
                if "Seccomp:\t2" in status:
                    break
            time.sleep(0.05)
        assert status is not None, "no host child appeared"
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields["NoNewPrivs"].strip() == "1"
        assert fields["Seccomp"].strip() == "2" and int(fields.get("Seccomp_filters", "1")) >= 1
        assert int(fields["CapEff"], 16) == 0
        assert cmdline == Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_step_failing_in_place_is_reported_like_a_forked_childs(tmp_path, dirs):
    """In place there is no parent to read the error pipe: the launcher says which call failed and exits 125."""
    r = _launch_body(tmp_path, dirs, limits="{open-files: 64}", body="def body():\n    return 0\n",
                     # over fs.nr_open: setrlimit() says EPERM, even to root
                     edit_host="host['rlimits'] = {'NOFILE': [1 << 40, 1 << 40]}")
    assert r.returncode == 125 and r.stderr == "sandboxer: setrlimit() failed: EPERM: Operation not permitted\n", r.stderr


def test_the_host_in_place_cannot_take_the_callers_terminal(tmp_path, dirs):
    """In place the host keeps its caller's session: TIOCSCTTY, TIOCSPGRP and TIOCNOTTY are refused by seccomp
    (EPERM, before the kernel would even look at the fd), as TIOCSTI is for every plan."""
    r = _launch_body(tmp_path, dirs, limits="{open-files: 64}", body=(
        "import errno, fcntl, struct\n"
        "def body():\n"
        "    seen = []\n"
        "    for cmd in (0x540E, 0x5410, 0x5422, 0x5412):\n"
        "        try:\n"
        "            fcntl.ioctl(0, cmd, struct.pack('i', 0))\n"
        "            seen.append('ok')\n"
        "        except OSError as e:\n"
        "            seen.append(errno.errorcode[e.errno])\n"
        "    print(' '.join(seen), flush=True)\n"
        "    return 0\n"))
    assert (r.returncode, r.stdout) == (0, "EPERM EPERM EPERM EPERM\n"), r.stderr


def test_without_limits_the_host_runs_in_place_confined(tmp_path, dirs):
    """No audit, cgroup limit or wall time: `sandboxer run` itself becomes the host (no fork), under the same steps:
    no_new_privs, seccomp, no capabilities, a private network namespace; a signal ends it as it would a native run."""
    m = fs_manifest(tmp_path, dirs, limits="{open-files: 64}")
    proc = subprocess.Popen([*SANDBOXER, "run", str(m), "--", str(WASM / "loop.wasm")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        fields: dict[str, str] = {}
        for _ in range(200):
            text = Path(f"/proc/{proc.pid}/status").read_text()
            fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
            if fields["Seccomp"].strip() == "2":
                break
            time.sleep(0.05)
        assert fields["Seccomp"].strip() == "2", "sandboxer run itself never came under the filter"
        assert fields["NoNewPrivs"].strip() == "1" and int(fields["CapEff"], 16) == 0
        assert Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text() == ""  # no forked host
        assert os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        proc.terminate()
        assert proc.wait(timeout=30) == -signal.SIGTERM  # as a shell reports it: 143
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_out_of_bounds_access_is_a_trap(tmp_path):
    """wasmtime's trap handlers work in the forked host (the launcher resets every signal; the body restores them):
    an out-of-bounds load is a clean trap (134), not a SIGSEGV."""
    import wasmtime

    module = tmp_path / "oob.wasm"
    module.write_bytes(wasmtime.wat2wasm(
        '(module (memory (export "memory") 1)'
        ' (func (export "_start") (drop (i32.load (i32.const 0x7ffffff0)))))'))
    r = run(write_manifest(tmp_path, "  wasi:cli/stderr: {}\n"), str(module))
    assert r.returncode == 134, r.stderr
    assert r.stderr.startswith("sandboxer: the module trapped: ") and "out of bounds" in r.stderr


def _dump(tmp_path: Path, obj: dict) -> Path:
    p = tmp_path / "host-plan.json"
    p.write_text(json.dumps(obj))
    return p


def _dump_bytes(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "host.bpf"
    p.write_bytes(data)
    return p


def test_audit_records_of_wasm_runs(tmp_path):
    """--audit on the wasm path: the same launch/violation/limit/exit records as native runs, schema-valid."""
    from tests.audit_schema import validate_records

    audit = tmp_path / "audit.jsonl"
    m = write_manifest(tmp_path, "  wasi:cli/stdout: {}\n  wasi:cli/stderr: {}\n")
    assert run(m, str(WASM / "hello.wasm"), options=("--audit", str(audit))).returncode == 0
    r = run(m, str(WASM / "env.wasm"), options=("--audit", str(audit)))
    assert r.returncode == 2
    r = run(m, str(WASM / "loop.wasm"), options=("--audit", str(audit), "--timeout", "0.5"))
    assert r.returncode == 137
    records = validate_records(audit)
    runs: dict[str, list[dict]] = {}
    for rec in records:
        runs.setdefault(rec["id"], []).append(rec)
    hello, refused, loop = runs.values()
    assert [x["type"] for x in hello][0] == "launch" and hello[-1]["type"] == "exit" and hello[-1]["code"] == 0
    assert hello[0]["command"][0] == str(WASM / "hello.wasm") and hello[0]["enforce"]["pidns"] is True
    assert {x["import"] for x in refused if x["type"] == "violation"} == {
        "wasi_snapshot_preview1.environ_get", "wasi_snapshot_preview1.environ_sizes_get"}
    assert all(x["capability"] == "wasi:cli/environment" and x["action"] == "refused"
               for x in refused if x["type"] == "violation")
    assert refused[-1]["type"] == "exit" and refused[-1]["exit_code"] == 2
    assert [x["kind"] for x in loop if x["type"] == "limit"] == ["wall_time"]
    assert loop[-1]["type"] == "exit" and loop[-1]["exit_code"] == 137


def test_complain_mode_does_not_blame_the_module_for_the_hosts_threads(tmp_path):
    """on-violation: log: wasmtime's own threads are the host's, not the module's: no clone violation is recorded."""
    from tests.audit_schema import validate_records

    audit = tmp_path / "audit.jsonl"
    m = write_manifest(tmp_path, "  wasi:cli/stdout: {}\n  wasi:cli/stderr: {}\n")
    m.write_text(m.read_text() + "on-violation: log\n")
    r = run(m, str(WASM / "hello.wasm"), options=("--audit", str(audit)))
    assert r.returncode == 0 and r.stdout == "hello from wasm\n", r.stderr
    calls = [(x.get("syscall") or {}).get("name") for x in validate_records(audit) if x["type"] == "violation"]
    assert "clone" not in calls
