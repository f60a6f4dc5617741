"""Plan → the files of a compiled directory (plan.json, seccomp.bpf/.txt/.oci.json). Pure."""

from __future__ import annotations

import json

from ..mechanisms.seccomp.bpf import assemble
from ..mechanisms.seccomp.emulator import disassemble
from ..plan import dumps
from .oci import export_oci

PLAN_FILE, BPF_FILE = "plan.json", "seccomp.bpf"


def render_bundle(plan: dict) -> dict[str, bytes]:
    """Every file `sandboxer compile` writes, by name (the PFC is added by the CLI: it needs libseccomp)."""
    bpf = assemble(plan["seccomp"])
    return {
        PLAN_FILE: dumps(plan).encode(),
        BPF_FILE: bpf,
        "seccomp.txt": disassemble(bpf).encode(),
        "seccomp.oci.json": dumps(export_oci(plan["seccomp"])).encode(),
    }


def read_bundle(directory: str) -> tuple[dict, bytes]:
    """(plan, BPF program) from a compiled directory."""
    with open(f"{directory}/{PLAN_FILE}", "rb") as f:
        plan = json.load(f)
    with open(f"{directory}/{BPF_FILE}", "rb") as f:
        bpf = f.read()
    return plan, bpf
