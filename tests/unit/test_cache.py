"""The compiled-plan cache: repeated launches skip YAML and the compiler, and never serve stale plans."""

from __future__ import annotations

import os

import pytest
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from sandboxer.runner import load_plan
plan, bpf, sha, _ = load_plan(sys.argv[1])
heavy = sorted(m for m in ("yaml", "typer", "sandboxer.plan", "sandboxer.manifest.load") if m in sys.modules)
print(plan["name"], len(bpf), ",".join(heavy) or "-")
"""


def _load(manifest: Path, cache: Path) -> str:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", PROBE, str(manifest)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_second_load_does_no_yaml_or_compile_work(tmp_path):
    """The first load compiles (YAML imported); the second comes from the cache without YAML."""
    m = tmp_path / "m.yaml"
    m.write_text("sandboxer: 1\nname: cached\nextends: [builtin:dynamic-linking]\n")
    first = _load(m, tmp_path / "cache")
    second = _load(m, tmp_path / "cache")
    assert first[:2] == second[:2] and first[0] == "cached"
    assert "yaml" in first[2]
    assert second[2] == "-"


def test_changed_base_profile_is_not_served_stale(tmp_path):
    """Editing a file the manifest extends invalidates the cached plan."""
    base = tmp_path / "base.yaml"
    base.write_text("sandboxer: 1\nname: base\n")
    m = tmp_path / "m.yaml"
    m.write_text("sandboxer: 1\nname: child\nextends: [./base.yaml]\n")
    assert _load(m, tmp_path / "cache")[2] != "-"
    assert _load(m, tmp_path / "cache")[2] == "-"
    base.write_text("sandboxer: 1\nname: base\nimports: {wasi:random/random: {}}\n")
    assert _load(m, tmp_path / "cache")[2] != "-"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a directory to another user")
def test_a_cache_another_user_controls_is_neither_read_nor_written(tmp_path):
    """A cache root inside a directory another user owns (sudo -E with a user's HOME): no entry is trusted,
    nothing is written through a symlink planted there, and the run still works (it compiles instead)."""
    from sandboxer import cache

    home = tmp_path / "alice"
    home.mkdir()
    os.chown(home, 65534, 65534)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    root = home / "sandboxer" / "plans"
    root.mkdir(parents=True)
    for pid in range(os.getpid() - 5, os.getpid() + 50):
        for name in ("x",):
            (root / f"{name}.{pid}.tmp").symlink_to(victim)
    assert not cache.trusted_dir(str(root))
    assert cache.write_atomic(str(root / "x"), b"data") is False
    assert victim.read_text() == "precious\n"
    entry = root / "planted"
    entry.write_bytes(b"policy")
    assert cache.read_trusted(str(entry)) is None


def test_an_entry_with_two_links_is_not_read(tmp_path):
    """A hard link could make one entry answer for another: entries must have exactly one link."""
    from sandboxer import cache

    d = tmp_path / "c"
    assert cache.write_atomic(str(d / "a"), b"policy")
    assert cache.read_trusted(str(d / "a")) == b"policy"
    os.link(d / "a", d / "b")
    assert cache.read_trusted(str(d / "a")) is None and cache.read_trusted(str(d / "b")) is None


def test_a_cache_made_under_umask_002_is_private_and_used(tmp_path):
    """Every directory the cache creates is 0700 whatever the umask (002 gives parents 0775 with makedirs)."""
    from sandboxer import cache

    old = os.umask(0o002)
    try:
        entry = tmp_path / "xdg" / "sandboxer" / "plans" / "e"
        assert cache.write_atomic(str(entry), b"plan")
    finally:
        os.umask(old)
    for d in (tmp_path / "xdg", tmp_path / "xdg" / "sandboxer", entry.parent):
        assert d.stat().st_mode & 0o777 == 0o700, d
    assert cache.read_trusted(str(entry)) == b"plan"
