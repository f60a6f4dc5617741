"""Real workloads run unchanged under their example manifests: no false denials, exit codes intact."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SANDBOXER = [sys.executable, "-m", "sandboxer"]

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="cgroup limits in the examples need root")]


def manifest(tmp_path: Path, example: str, **paths: Path) -> Path:
    """The example with its placeholder directories (/srv/in, /work/repo…) moved under tmp_path."""
    text = (REPO / "examples" / example).read_text()
    for placeholder, real in paths.items():
        text = text.replace(placeholder, str(real))
    out = tmp_path / example
    out.write_text(text)
    return out


def run(m: Path, *cmd: str, stdin: str | None = None, cwd: Path | None = None, timeout: float = 120,
        expected: frozenset[str] = frozenset()):
    """Run under the manifest with --audit: no call may be refused but the `expected` syscalls (documented in the example)."""
    with tempfile.TemporaryDirectory() as d:
        audit = Path(d) / "audit.jsonl"
        r = subprocess.run([*SANDBOXER, "run", str(m), "--audit", str(audit), "--", *cmd], input=stdin,
                           capture_output=True, text=True, cwd=cwd or REPO, timeout=timeout)
        refused = [json.loads(line) for line in audit.read_text().splitlines() if '"type":"violation"' in line]
    refused = [v for v in refused if (v.get("syscall") or {}).get("name") not in expected]
    assert refused == [], f"false denials under {m.name}: {refused}"
    return r


def test_python_reads_csv_and_writes_report(tmp_path):
    """CPython reads a CSV from the read-only input dir and writes a report into the output dir."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "sales.csv").write_text("region,amount\nnorth,10\nsouth,32\nnorth,5\n")
    (src / "report.py").write_text(
        "import csv, collections, json, sys\n"
        "totals = collections.Counter()\n"
        "for row in csv.DictReader(open(sys.argv[1])):\n"
        "    totals[row['region']] += int(row['amount'])\n"
        "json.dump(dict(sorted(totals.items())), open(sys.argv[2], 'w'))\n"
        "try:\n"
        "    open(sys.argv[1] + '.tampered', 'w')\n"
        "except PermissionError:\n"
        "    print('input is read-only')\n")
    m = manifest(tmp_path, "data-processor.yaml", **{"/srv/in": src, "/srv/out": out})
    r = run(m, "/usr/bin/python3", str(src / "report.py"), str(src / "sales.csv"), str(out / "report.json"))
    assert r.returncode == 0, r.stderr
    assert (out / "report.json").read_text() == '{"north": 15, "south": 32}'
    assert r.stdout == "input is read-only\n"


@pytest.mark.skipif(not shutil.which("gcc"), reason="gcc is not installed")
def test_gcc_compiles_into_one_directory(tmp_path):
    """gcc compiles and links C from /src into /build (its helpers run as children)."""
    src, build = tmp_path / "src", tmp_path / "build"
    src.mkdir()
    build.mkdir()
    (src / "main.c").write_text('#include <stdio.h>\nint main(void){puts("built in a sandbox");return 0;}\n')
    m = manifest(tmp_path, "c-build.yaml", **{"/src": src, "/build": build})
    r = run(m, "gcc", "-O2", "-o", str(build / "main"), str(src / "main.c"))
    assert r.returncode == 0, r.stderr
    assert subprocess.run([build / "main"], capture_output=True, text=True).stdout == "built in a sandbox\n"


@pytest.mark.skipif(not shutil.which("git"), reason="git is not installed")
def test_git_init_add_commit(tmp_path):
    """git init, add and commit work inside the one writable repository directory."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README").write_text("hello\n")
    m = manifest(tmp_path, "git-commit.yaml", **{"/work/repo": repo})
    for cmd in (["init", "-q", "-b", "main"], ["add", "README"], ["commit", "-q", "-m", "first"]):
        r = run(m, "/usr/bin/git", "-C", str(repo), *cmd)
        assert r.returncode == 0, (cmd, r.stderr)
    log = subprocess.run(["git", "-C", repo, "log", "--format=%s %an"], capture_output=True, text=True)
    assert log.stdout == "first sandboxer\n"


@pytest.mark.skipif(not shutil.which("sqlite3"), reason="sqlite3 is not installed")
def test_sqlite3_writes_a_database(tmp_path):
    """sqlite3 creates, fills and queries a database (with its journal) in its one directory."""
    db = tmp_path / "db"
    db.mkdir()
    m = manifest(tmp_path, "sqlite.yaml", **{"/work/db": db})
    sql = "create table t(x); insert into t values (1),(2),(3); select sum(x) from t;\n"
    r = run(m, "/usr/bin/sqlite3", str(db / "test.db"), stdin=sql, expected=frozenset({"socket"}))  # see the example
    assert r.returncode == 0, r.stderr
    assert r.stdout == "6\n"
    assert (db / "test.db").stat().st_size > 0


def test_shell_pipeline_of_coreutils(tmp_path):
    """A sh pipeline of cat, sort, uniq and head summarises a read-only directory."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("GET /\nGET /x\nPOST /y\n")
    (logs / "b.log").write_text("GET /\nGET /\n")
    m = manifest(tmp_path, "shell-pipeline.yaml", **{"/work/logs": logs})
    script = f"cat {logs}/*.log | cut -d' ' -f1 | sort | uniq -c | sort -rn | head -1 | tr -s ' '"
    r = run(m, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "4 GET"


def test_hello_example_prints(tmp_path):
    """The README's example runs and its output passes through."""
    r = run(REPO / "examples" / "hello.yaml", "echo", "hello from the sandbox")
    assert (r.returncode, r.stdout) == (0, "hello from the sandbox\n"), r.stderr


def test_tcp_client_reaches_its_one_port_only(tmp_path):
    """The TCP client example connects to 127.0.0.1:8080 but not to another local port."""
    servers = []
    for port in (8080, 0):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            pytest.skip(f"port {port} is busy on this machine")
        s.listen(4)
        servers.append(s)
    other = servers[1].getsockname()[1]
    stop = threading.Event()

    def serve(s):
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = s.accept()
                c.sendall(b"pong")
                c.close()
            except OSError:
                pass

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    for t in threads:
        t.start()
    code = ("import socket, sys\n"
            "for port in (8080, int(sys.argv[1])):\n"
            "    try:\n"
            "        c = socket.create_connection(('127.0.0.1', port), timeout=5); print(port, c.recv(4).decode())\n"
            "    except OSError as e:\n"
            "        print(port, e.errno)\n")
    try:
        r = run(REPO / "examples" / "tcp-client.yaml", "/usr/bin/python3", "-c", code, str(other))
    finally:
        stop.set()
        for s in servers:
            s.close()
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["8080 pong", f"{other} 13"]  # 13 = EACCES from Landlock
