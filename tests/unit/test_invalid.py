"""Every broken manifest in tests/invalid/ renders exactly the compiler-style text of its .err file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sandboxer.errors import ManifestError
from sandboxer.manifest.load import load_policy
from sandboxer.plan import Target, compile_plan

ROOT = Path(__file__).resolve().parents[2]
CASES_DIR = ROOT / "tests" / "invalid"
CASES = sorted(p.stem for p in CASES_DIR.glob("*.yaml"))
# A case may pin its target on its first line, e.g. `# target: x86_64 landlock-abi 3`.
_TARGET = re.compile(r"^# target: (\S+) landlock-abi (\d+)$")


def _target(manifest: Path) -> Target:
    first = manifest.read_text().split("\n", 1)[0]
    m = _TARGET.match(first)
    return Target(m.group(1), int(m.group(2))) if m else Target("x86_64", 7)


def _rendered(rel: str) -> str:
    """What loading and compiling `rel` (relative to the repo root) reports, repo root stripped."""
    try:
        compile_plan(load_policy(rel), _target(ROOT / rel))
    except ManifestError as e:
        # extends cycles are reported with real (absolute) paths: strip the checkout's location
        return e.render().replace(f"{ROOT}/", "") + "\n"
    pytest.fail(f"{rel} compiled without an error")


def test_there_are_enough_cases() -> None:
    """The invalid corpus covers at least 20 distinct mistakes, each with its .err file."""
    assert len(CASES) >= 20
    assert sorted(p.stem for p in CASES_DIR.glob("*.err")) == CASES


@pytest.mark.parametrize("case", CASES)
def test_invalid_manifest_message(case: str, update_golden: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered ManifestError is byte-for-byte the case's .err file."""
    monkeypatch.chdir(ROOT)
    text = _rendered(f"tests/invalid/{case}.yaml")
    expected = CASES_DIR / f"{case}.err"
    if update_golden:
        expected.write_text(text)
    assert text == expected.read_text()


def test_several_errors_are_all_reported_in_file_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest with many mistakes reports each one, sorted by line and column."""
    monkeypatch.chdir(ROOT)
    with pytest.raises(ManifestError) as info:
        load_policy("tests/invalid/several-errors.yaml")
    spans = [(d.span.line, d.span.col) for d in info.value.diagnostics]
    assert len(spans) == 8
    assert spans == sorted(spans)


def test_diagnostics_follow_the_file_not_the_checker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors come out in file order even when `limits:` is written before `imports:`."""
    monkeypatch.chdir(tmp_path)
    Path("m.yaml").write_text("sandboxer: 1\nlimits: {memory: 1GB}\nimports:\n  wasi:cli/stdot: {}\n")
    with pytest.raises(ManifestError) as info:
        load_policy("m.yaml")
    assert [d.span.line for d in info.value.diagnostics] == [2, 4]


TCP_MANIFEST = """\
sandboxer: 1
name: tcp-on-old-kernel
compat: {landlock: best-effort}
imports:
  wasi:sockets/tcp: {connect: [443], why: the API}
"""


def test_best_effort_compiles_and_records_the_degradation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With compat.landlock best-effort, a TCP grant on ABI 3 compiles and the plan says what is lost."""
    monkeypatch.chdir(tmp_path)
    Path("m.yaml").write_text(TCP_MANIFEST)
    plan = compile_plan(load_policy("m.yaml"), Target("x86_64", 3))
    assert plan["compat"]["landlock"] == "best-effort"
    assert plan["landlock"]["handled_net"] == []
    assert plan["landlock"]["ports"] == []
    tcp = [d for d in plan["degradations"] if d["capability"] == "wasi:sockets/tcp"]
    assert tcp == [{
        "mechanism": "landlock", "capability": "wasi:sockets/tcp",
        "what": "TCP ports are not filtered (any port can be connected to or bound)",
        "needs": "Landlock ABI 4 (Linux 6.7)", "targeted": "Landlock ABI 3",
        "at": "m.yaml:5:3", "severity": "error",
    }]
    # the socket itself is still granted by seccomp
    assert "socket" in {s["name"] for s in plan["seccomp"]["syscalls"]}


def test_strict_refusal_names_capability_line_and_both_abis(monkeypatch: pytest.MonkeyPatch) -> None:
    """The strict refusal quotes the capability, its manifest line, the needed and the targeted ABI."""
    monkeypatch.chdir(ROOT)
    first = _rendered("tests/invalid/compat-strict-tcp.yaml").splitlines()[0]
    assert first.startswith("tests/invalid/compat-strict-tcp.yaml:5:3: error: wasi:sockets/tcp needs Landlock ABI 4")
    assert "Landlock ABI 3" in first
