"""Golden plans: every example and built-in profile compiles to the committed plan.json and seccomp.oci.json.

`pytest --update-golden` rewrites them, so a policy change shows up as a reviewable diff. The BPF
itself is not pinned here (its behaviour is checked in tests/unit/test_oci.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sandboxer.export.oci import export_oci
from sandboxer.manifest.load import load_policy
from sandboxer.plan import Target, compile_plan, dumps

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent

# (case directory, manifest relative to the repo root, arch)
CASES = [
    *[(p.stem, f"examples/{p.name}", "x86_64") for p in sorted((ROOT / "examples").glob("*.yaml"))],
    *[(p.stem, f"profiles/{p.name}", "x86_64") for p in sorted((ROOT / "profiles").glob("*.yaml"))],
    ("hello-aarch64", "examples/hello.yaml", "aarch64"),
]


def _outputs(manifest: str, arch: str) -> dict[str, str]:
    plan = compile_plan(load_policy(manifest), Target(arch, 7))
    return {"plan.json": dumps(plan), "seccomp.oci.json": dumps(export_oci(plan["seccomp"]))}


def test_case_names_are_unique() -> None:
    """No example shares a golden directory with a profile."""
    names = [name for name, _, _ in CASES]
    assert len(names) == len(set(names))


def test_no_stray_golden_directories() -> None:
    """Every directory under tests/golden/ belongs to a case (a removed example leaves no orphan)."""
    # k8s/ holds the Kubernetes exporter's golden files (tests/unit/test_k8s.py checks its own directories)
    dirs = {p.name for p in GOLDEN.iterdir() if p.is_dir() and not p.name.startswith("__") and p.name != "k8s"}
    assert dirs == {name for name, _, _ in CASES}


@pytest.mark.parametrize(("case", "manifest", "arch"), CASES, ids=[c[0] for c in CASES])
def test_golden(case: str, manifest: str, arch: str, update_golden: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled plan and OCI profile equal the committed files, byte for byte."""
    monkeypatch.chdir(ROOT)  # relative manifest paths keep `at` stable: examples/hello.yaml:12:3
    outputs = _outputs(manifest, arch)
    assert str(ROOT) not in outputs["plan.json"], "a span names the checkout's absolute path"
    directory = GOLDEN / case
    if update_golden:
        directory.mkdir(exist_ok=True)
        for name, text in outputs.items():
            (directory / name).write_text(text)
    for name, text in outputs.items():
        expected = directory / name
        assert expected.is_file(), f"missing {expected}: run pytest --update-golden"
        assert text == expected.read_text(), f"{case}/{name} changed: review, then pytest --update-golden"
