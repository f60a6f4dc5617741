"""Hypothesis: any valid manifest compiles for every target, reproducibly, into a filter the kernel accepts."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sandboxer.export.oci import export_oci
from sandboxer.manifest.load import builtin_profiles, load_policy
from sandboxer.mechanisms.seccomp.bpf import assemble
from sandboxer.mechanisms.seccomp.emulator import BPF_MAXINSNS, check
from sandboxer.mechanisms.seccomp.tables import ARCHES, TABLES
from sandboxer.model import registry as reg
from sandboxer.plan import Target, compile_plan, dumps

PATHS = ["/", "/srv/a", "/srv/a/b", "/srv/b", "/usr", "/usr/bin/env", "/tmp", "/etc/hosts", "/dev/null"]
ENV_NAMES = ["PATH", "LANG", "HOME", "TZ", "_X1", "lc_all"]

ports = st.lists(st.integers(1, 65535), max_size=5)
why = st.one_of(st.none(), st.text(st.sampled_from("abc xyz:-é'\"#"), min_size=1, max_size=20))
access = st.sets(st.sampled_from(reg.ACCESS_MODES), min_size=1).flatmap(lambda modes: st.one_of(
    st.just("+".join(sorted(modes))), st.just(",".join(sorted(modes))), st.just("-".join(sorted(modes))),
    st.permutations(sorted(modes)).map(list)))
sizes = st.one_of(st.integers(0, 2**40), st.builds(lambda n, u: f"{n}{u}", st.integers(0, 4096),
                                                    st.sampled_from(["", "k", "M", "G", "Ki", "Mi", "Gi"])))
durations = st.builds(lambda n, u: f"{n}{u}", st.one_of(st.integers(1, 10_000), st.sampled_from(["0.5", "1.25"])),
                      st.sampled_from(["ms", "s", "m", "h"]))
cores = st.one_of(st.floats(0.01, 512, allow_nan=False), st.integers(1, 512),
                  st.integers(10, 64_000).map(lambda m: f"{m}m"))
LIMIT_VALUES = {"size": sizes, "count": st.integers(1, 1 << 20), "cores": cores, "duration": durations}


def _with_why(params: st.SearchStrategy[dict]) -> st.SearchStrategy[dict | None]:
    def add(p: dict, w: str | None) -> dict | None:
        if w is not None:
            p = {**p, "why": w}
        return p or None  # `name:` with nothing is a grant too
    return st.builds(add, params, why)


def _grant(name: str) -> st.SearchStrategy:
    cap = reg.CAPABILITIES[name]
    if cap.shape == "preopens":
        entry = st.builds(lambda p, a, w: {"path": p, "access": a, **({"why": w} if w else {})},
                          st.sampled_from(PATHS), access, why)
        return st.lists(entry, min_size=1, max_size=6)
    params = {}
    for key, param in cap.params.items():
        if param.kind == "ports":
            params[key] = ports
        elif param.kind == "names":
            params[key] = st.lists(st.sampled_from(ENV_NAMES), max_size=4)
        elif param.kind == "env-set":
            params[key] = st.dictionaries(st.sampled_from(ENV_NAMES),
                                          st.one_of(st.text(max_size=8), st.integers(-5, 5)), max_size=3)
    return _with_why(st.fixed_dictionaries({}, optional=params))


@st.composite
def manifests(draw: st.DrawFn) -> dict:
    names = draw(st.lists(st.sampled_from(list(reg.CAPABILITIES)), unique=True))
    doc: dict = {"sandboxer": 1, "name": draw(st.sampled_from(["m", "data job", "ünïcode"]))}
    extends = draw(st.lists(st.sampled_from(builtin_profiles()), unique=True, max_size=2))
    if extends:
        doc["extends"] = [f"builtin:{p}" for p in extends]
    doc["imports"] = {n: draw(_grant(n)) for n in names}
    limits = draw(st.lists(st.sampled_from(list(reg.LIMITS)), unique=True))
    if limits:
        doc["limits"] = {k: draw(LIMIT_VALUES[reg.LIMITS[k][0]]) for k in limits}
    doc["on-violation"] = draw(st.sampled_from(list(reg.ON_VIOLATION)))
    others = draw(st.fixed_dictionaries({}, optional={m: st.sampled_from(reg.COMPAT_MODES)
                                                       for m in reg.COMPAT_MECHANISMS if m != "landlock"}))
    doc["compat"] = draw(st.sampled_from(["best-effort", {**others, "landlock": "best-effort"}]))
    if draw(st.booleans()):
        doc["network"] = draw(st.sampled_from(reg.NETWORK_MODES))
    return doc


@settings(max_examples=60, deadline=None)
@given(manifests())
def test_any_valid_manifest_compiles_everywhere(doc: dict) -> None:
    """It compiles for both arches and Landlock ABIs 1-7; twice gives the same bytes; BPF fits; OCI exports."""
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.yaml"
        path.write_text(text, encoding="utf-8")
        for arch in ARCHES:
            for abi in range(1, 8):
                target = Target(arch, abi)
                plan = compile_plan(load_policy(path), target)
                assert dumps(plan) == dumps(compile_plan(load_policy(path), target))
                assert plan["target"] == {"arch": arch, "landlock_abi": abi}
                assert {g["capability"] for g in plan["grants"]} >= set(doc["imports"])
                tbl = TABLES[arch].SYSCALLS
                assert all(tbl[s["name"]] == s["nr"] for s in plan["seccomp"]["syscalls"])
                bpf = assemble(plan["seccomp"])
                assert len(bpf) // 8 <= BPF_MAXINSNS
                check(bpf)  # the kernel would attach it
                oci = export_oci(plan["seccomp"])
                assert oci["syscalls"]
