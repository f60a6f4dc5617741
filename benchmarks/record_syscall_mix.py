#!/usr/bin/env python3
"""Benchmark input: count the system calls four real workloads make (strace -f -c) and store them as JSON.

Writes benchmarks/data/syscall_mix.json: per workload, {syscall name: calls} on x86_64, plus the
commands and tool versions that produced it. bpf_replay.py weights filter costs by this mix.

    .venv/bin/python benchmarks/record_syscall_mix.py [-o benchmarks/data/syscall_mix.json]

Each workload runs once untraced first (page cache, Python bytecode caches), then under strace.
strace -c leaves out calls that never return (exit_group, and execve of a replaced image is counted
once per successful exec). Needs strace, gcc, git and tar on /usr/bin.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "benchmarks" / "data" / "syscall_mix.json"
# The venv's interpreter itself: `python3` on PATH is a pyenv shell shim that adds its own syscalls.
PYTHON = ROOT / ".venv" / "bin" / "python"

SMALL_C = """\
#include <stdio.h>
#include <string.h>

struct point { double x, y; };

static double dot(const struct point *a, const struct point *b) { return a->x * b->x + a->y * b->y; }

int checksum(const char *s)
{
    int h = 5381;
    for (size_t i = 0; i < strlen(s); i++)
        h = h * 33 + s[i];
    return h;
}

int main(void)
{
    struct point a = {1, 2}, b = {3, 4};
    printf("%f %d\\n", dot(&a, &b), checksum("sandboxer"));
    return 0;
}
"""


def _write_tree(root: Path, files: int, size: int) -> None:
    """`files` deterministic text files of about `size` bytes under `root` (three subdirectories)."""
    for i in range(files):
        path = root / f"dir{i % 3}" / f"file{i:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        line = f"line of file {i}: the quick brown fox jumps over the lazy dog\n"
        path.write_text(line * (size // len(line) + 1))


def _env(home: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LC_ALL": "C",
        "TZ": "UTC",
        "PYTHONHASHSEED": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    }


def parse_strace_summary(text: str) -> dict[str, int]:
    """{syscall: calls} from `strace -c -U name,calls` output; only the native (64-bit) table."""
    counts: dict[str, int] = {}
    section = 0  # dashed rules seen in the current table
    for line in text.splitlines():
        if line.startswith("System call usage summary for"):
            # A second table (32-bit or x32 personality) follows; this mix is x86_64 only.
            print(f"warning: ignoring strace table: {line.strip()}", file=sys.stderr)
            break
        if line.startswith("----"):
            section += 1
            continue
        if section != 1:
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise ValueError(f"unexpected strace -c line: {line!r}")
        counts[fields[0]] = counts.get(fields[0], 0) + int(fields[1])
    if section < 2:
        raise ValueError("no strace -c table found")
    return counts


def trace(argv: list[str], cwd: Path, env: dict[str, str], scratch: Path) -> dict[str, int]:
    """Run `argv` under strace -f -c and return its syscall counts; fails if the command fails."""
    out = scratch / "strace.txt"
    subprocess.run(
        ["strace", "-f", "-c", "-U", "name,calls", "-o", str(out), *argv],
        cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    return parse_strace_summary(out.read_text())


def _run_workload(steps: list[list[str]], cwd: Path, env: dict[str, str], scratch: Path,
                  warm: bool = True) -> dict[str, int]:
    if warm:
        for argv in steps:
            subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    total: Counter[str] = Counter()
    for argv in steps:
        total.update(trace(argv, cwd, env, scratch))
    return dict(total)


def record() -> dict:
    workloads: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="syscall-mix-") as tmp:
        base = Path(tmp)
        scratch = base / "scratch"
        scratch.mkdir()
        env = _env(base)

        py = [str(PYTHON), "-c", "import json, csv, email, http.client"]
        workloads["python_imports"] = {
            "commands": [[".venv/bin/python", *py[1:]]],
            "syscalls": _run_workload([py], base, env, scratch),
        }

        cc_dir = base / "cc"
        cc_dir.mkdir()
        (cc_dir / "small.c").write_text(SMALL_C)
        cc = ["gcc", "-O2", "-c", "small.c", "-o", "small.o"]
        workloads["gcc_compile"] = {"commands": [cc], "syscalls": _run_workload([cc], cc_dir, env, scratch)}

        # git: the untraced warm-up happens in a separate repository, so the traced run starts fresh.
        git_steps = [
            ["git", "init", "-q"],
            ["git", "add", "-A"],
            ["git", "commit", "-q", "-m", "initial"],
        ]
        warm_repo, repo = base / "git-warm", base / "git"
        for d in (warm_repo, repo):
            _write_tree(d, files=30, size=2000)
        _run_workload(git_steps, warm_repo, env, scratch, warm=False)
        workloads["git_commit"] = {
            "commands": git_steps,
            "syscalls": _run_workload(git_steps, repo, env, scratch, warm=False),
        }

        tar_dir = base / "tar"
        _write_tree(tar_dir / "files", files=60, size=8000)
        tar = ["tar", "czf", "files.tar.gz", "files"]
        workloads["tar_gzip"] = {"commands": [tar], "syscalls": _run_workload([tar], tar_dir, env, scratch)}

    return {
        "arch": platform.machine(),
        "kernel": platform.release(),
        "tools": _versions(),
        "how": "strace -f -c -U name,calls; one untraced warm-up run first; exit_group is not counted",
        "workloads": workloads,
    }


def _first_line(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()[0].strip()


def _versions() -> dict[str, str]:
    return {
        "gcc": _first_line(["gcc", "--version"]),
        "git": _first_line(["git", "--version"]),
        "python": _first_line([str(PYTHON), "--version"]),
        "strace": _first_line(["strace", "-V"]),
        "tar": _first_line(["tar", "--version"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if platform.machine() != "x86_64":
        print(f"error: the recorded mix is for x86_64; this machine is {platform.machine()}", file=sys.stderr)
        return 2
    data = record()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    for name, w in sorted(data["workloads"].items()):
        calls = w["syscalls"]
        print(f"{name:16} {sum(calls.values()):7} calls  {len(calls):4} distinct syscalls")
    print(f"wrote {os.path.relpath(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
