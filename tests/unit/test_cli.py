"""The CLI through typer's runner: exit codes, byte-identical compiles, explain, probe, and the schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from sandboxer.cli import app
from sandboxer.model.registry import CAPABILITIES
from sandboxer.plan import dumps
from sandboxer.schema import manifest_schema

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
TARGET = ["--arch", "x86_64", "--landlock-abi", "7"]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    """Invoke the app from the repo root, so manifest paths (and spans) are relative."""
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_check_accepts_every_example(cli) -> None:
    """`check` on the examples exits 0 and says ok for each."""
    result = cli("check", *[f"examples/{p.name}" for p in EXAMPLES], *TARGET)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"examples/{p.name}: ok" for p in EXAMPLES]


def test_check_rejects_a_broken_manifest_with_exit_2(cli) -> None:
    """A bad manifest exits 2 with a compiler-style file:line:col: error: line on stderr."""
    result = cli("check", "tests/invalid/unknown-capability.yaml", *TARGET)
    assert result.exit_code == 2
    assert result.stderr.startswith("tests/invalid/unknown-capability.yaml:3:3: error: unknown capability")


def test_check_reports_every_file_and_fails_if_one_fails(cli) -> None:
    """With a good and a bad manifest, the good one is ok, the bad one is reported, exit 2."""
    result = cli("check", "examples/hello.yaml", "tests/invalid/bad-size.yaml", *TARGET)
    assert result.exit_code == 2
    assert "examples/hello.yaml: ok" in result.stdout
    assert "tests/invalid/bad-size.yaml:2:18: error:" in result.stderr


def test_bad_target_is_a_usage_error(cli) -> None:
    """An unknown --arch or an out-of-range --landlock-abi exits 2 with a sandboxer: message."""
    result = cli("check", "examples/hello.yaml", "--arch", "mips")
    assert result.exit_code == 2 and "unknown --arch 'mips'" in result.stderr
    result = cli("check", "examples/hello.yaml", "--landlock-abi", "9")
    assert result.exit_code == 2 and "--landlock-abi must be 1..7" in result.stderr


def _tree(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_compile_twice_is_byte_identical(cli, tmp_path: Path, arch: str) -> None:
    """Two compiles of the same manifest write the same files with the same bytes."""
    for out in ("a", "b"):
        result = cli("compile", "examples/c-build.yaml", "-o", tmp_path / out, "--arch", arch)
        assert result.exit_code == 0, result.output
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert sorted(a) == ["plan.json", "seccomp.bpf", "seccomp.oci.json", "seccomp.pfc", "seccomp.txt"]
    assert a == b
    assert json.loads(a["plan.json"])["target"] == {"arch": arch, "landlock_abi": 7}


def test_compile_of_a_broken_manifest_writes_nothing(cli, tmp_path: Path) -> None:
    """A failed compile exits 2 and creates no output directory."""
    result = cli("compile", "tests/invalid/bad-size.yaml", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("example", [p.name for p in EXAMPLES])
def test_explain_mentions_each_grant(cli, example: str) -> None:
    """`explain` has a section for every granted capability (those of extended profiles too)."""
    from sandboxer.manifest.load import load_policy

    result = cli("explain", f"examples/{example}", *TARGET)
    assert result.exit_code == 0, result.output
    for capability in load_policy(f"examples/{example}").grants:
        assert capability in result.stdout


def test_explain_list_names_every_capability(cli) -> None:
    """`explain --list` lists every capability of the registry with its summary."""
    result = cli("explain", "--list")
    assert result.exit_code == 0
    for name, cap in CAPABILITIES.items():
        assert any(name in line and cap.summary in line for line in result.stdout.splitlines()), name


def test_probe_json_is_json_with_every_mechanism(cli) -> None:
    """`probe --json` prints one JSON object with seccomp, landlock, cgroups and netns."""
    result = cli("probe", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert {"seccomp", "landlock", "cgroups", "netns"} <= set(report)


def test_committed_schema_is_up_to_date() -> None:
    """schemas/manifest.schema.json is exactly what the registry generates."""
    committed = (ROOT / "schemas" / "manifest.schema.json").read_text()
    assert committed == dumps(manifest_schema()), \
        "the schema drifted from the registry: run `sandboxer schema -o schemas/manifest.schema.json`"


def test_schema_command_prints_the_schema(cli) -> None:
    """`sandboxer schema` prints the same canonical JSON."""
    result = cli("schema")
    assert result.exit_code == 0
    assert result.stdout == dumps(manifest_schema())


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    """The generated schema itself passes the metaschema."""
    Draft202012Validator.check_schema(manifest_schema())


@pytest.mark.parametrize("manifest", [*EXAMPLES, *PROFILES], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_example_and_profile_validates_against_the_schema(manifest: Path) -> None:
    """Editors using the schema accept every shipped manifest."""
    errors = list(Draft202012Validator(manifest_schema()).iter_errors(yaml.safe_load(manifest.read_text())))
    assert errors == []


@pytest.mark.parametrize("bad", [
    {"sandboxer": 1, "imports": {"wasi:sockets/tpc": {}}},
    {"sandboxer": 1, "imports": {"wasi:sockets/tcp": {"connect": [0]}}},
    {"sandboxer": 1, "limits": {"memory": "256MB"}},
    {"sandboxer": 2},
])
def test_schema_rejects_what_the_loader_rejects(bad: dict) -> None:
    """A few mistakes the loader reports are also caught by the schema in an editor."""
    assert list(Draft202012Validator(manifest_schema()).iter_errors(bad))


@pytest.mark.parametrize("example", [p.name for p in EXAMPLES])
def test_every_example_names_the_schema_on_its_first_line(example: str) -> None:
    """Examples open with the yaml-language-server modeline so editors pick up the schema."""
    first = (ROOT / "examples" / example).read_text().split("\n", 1)[0]
    assert first.startswith("# yaml-language-server: $schema=")
    target = first.split("$schema=", 1)[1]
    assert (ROOT / "examples" / target).resolve() == ROOT / "schemas" / "manifest.schema.json"
