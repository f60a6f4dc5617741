"""Module and component imports are read without wasmtime and mapped to capabilities; refusals name the line to add."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandboxer.manifest.load import load_policy
from sandboxer.plan import Target, compile_plan
from sandboxer.runner import _is_wasm, parse_args
from sandboxer.wasm import detect, host_plan, init
from sandboxer.wasm.imports import (
    Missing,
    WasmFormatError,
    check_imports,
    need_of,
    read_imports,
    render_missing,
    required_capabilities,
)

WASM = Path(__file__).resolve().parents[1] / "wasm"
P1 = "wasi_snapshot_preview1"

EXPECTED = {  # module → capabilities its imports need
    "hello": [], "loop": [], "hog": [],
    "env": ["wasi:cli/environment"],
    "readfile": ["wasi:filesystem/preopens"], "writefile": ["wasi:filesystem/preopens"],
    "clock": ["wasi:clocks/monotonic-clock", "wasi:clocks/wall-clock", "wasi:random/random"],
    "greet.component": ["wasi:cli/environment", "wasi:cli/stdout"],
}


def imports_of(name: str) -> tuple[str, list[str]]:
    return read_imports((WASM / f"{name}.wasm").read_bytes())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_programs_need_what_they_use(name):
    """Each committed test program needs exactly the capabilities its C source uses."""
    kind, items = imports_of(name)
    assert required_capabilities(kind, items) == (EXPECTED[name], [])


def test_component_imports_are_interface_names():
    """A component's imports are the WIT interfaces of its world, versions included."""
    assert imports_of("greet.component") == ("component", [
        "wasi:cli/environment@0.2.0", "wasi:io/error@0.2.0", "wasi:io/streams@0.2.0", "wasi:cli/stdout@0.2.0"])


def test_component_reader_agrees_with_wasmtime():
    """The pure reader lists the same top-level imports as wasmtime's component type."""
    wasmtime = pytest.importorskip("wasmtime")
    from wasmtime.component import Component

    cfg = wasmtime.Config()
    cfg.wasm_component_model = True
    engine = wasmtime.Engine(cfg)
    component = Component(engine, (WASM / "greet.component.wasm").read_bytes())
    assert sorted(component.type.imports(engine)) == sorted(imports_of("greet.component")[1])


def test_core_reader_agrees_with_wasmtime():
    """The pure reader lists the same imports as wasmtime's Module.imports."""
    wasmtime = pytest.importorskip("wasmtime")
    module = wasmtime.Module(wasmtime.Engine(), (WASM / "readfile.wasm").read_bytes())
    assert [f"{i.module}.{i.name}" for i in module.imports] == imports_of("readfile")[1]


@pytest.mark.parametrize("data, kind", [(b"\0asm\x01\0\0\0", "module"), (b"\0asm\x0d\0\x01\0", "component"),
                                        (b"\x7fELF\x02\x01\x01\0", None), (b"\0asm", None)])
def test_detect_kind(data, kind):
    """The preamble tells a core module from a component; anything else is not WebAssembly."""
    assert detect.kind_of(data) == kind


def test_not_wasm_is_a_format_error():
    """Bytes without the magic raise WasmFormatError, and so does a truncated section."""
    with pytest.raises(WasmFormatError, match="no \\\\0asm header"):
        read_imports(b"#!/bin/sh\n")
    with pytest.raises(WasmFormatError, match="runs past the end"):
        read_imports(b"\0asm\x01\0\0\0\x02\x7f")


@pytest.mark.parametrize("kind, item, needs", [
    ("module", f"{P1}.fd_write", ()),
    ("module", f"{P1}.path_open", (("wasi:filesystem/preopens",),)),
    ("module", f"{P1}.clock_time_get", (("wasi:clocks/wall-clock",), ("wasi:clocks/monotonic-clock",))),
    ("module", "env.my_host_function", None),
    ("component", "wasi:io/streams@0.2.3", ()),
    ("component", "wasi:filesystem/types@0.2.0", ()),
    ("component", "wasi:sockets/tcp-create-socket@0.2.0", (("wasi:sockets/tcp",),)),
    ("component", "wasi:sockets/instance-network@0.2.0",
     (("wasi:sockets/tcp", "wasi:sockets/udp", "wasi:sockets/ip-name-lookup"),)),
    ("component", "wasi:random/random@0.2.0", (("wasi:random/random",),)),
    ("component", "wasi:http/outgoing-handler@0.2.0", None),
])
def test_need_of(kind, item, needs):
    """Preview 1 functions and preview 2 interfaces map to capabilities; base imports need none; foreign ones are unprovidable."""
    assert need_of(kind, item).needs == needs


def test_alternatives_are_satisfied_by_any():
    """instance-network is covered by any one socket grant."""
    item = "wasi:sockets/instance-network@0.2.0"
    assert check_imports("component", [item], {"wasi:sockets/udp"}) == []
    assert check_imports("component", [item], set()) == [
        Missing("wasi:sockets/tcp", ("wasi:sockets/tcp", "wasi:sockets/udp", "wasi:sockets/ip-name-lookup"), (item,))]


def test_render_missing_text():
    """The refusal lists each missing capability, who needs it, and the manifest line to add."""
    kind, items = imports_of("readfile")
    missing = check_imports(kind, [*items, "env.custom"], {"wasi:cli/stdout"})
    assert render_missing(missing, "readfile.wasm", "m.yaml") == (
        "readfile.wasm imports what m.yaml does not grant:\n"
        "  wasi:filesystem/preopens, needed by wasi_snapshot_preview1.path_open\n"
        "      add under imports:  wasi:filesystem/preopens: [{path: /PATH, access: read}]\n"
        "  env.custom: no capability provides this import (the runtime cannot satisfy it)")


@pytest.mark.parametrize("make", [lambda: init.from_wasm(str(WASM / "clock.wasm")),
                                  lambda: init.from_wasm(str(WASM / "readfile.wasm")),
                                  lambda: init.from_wasm(str(WASM / "hello.wasm")),
                                  lambda: init.from_wit(str(WASM / "wit" / "world.wit"))])
def test_init_skeletons_compile(tmp_path, make):
    """Every generated skeleton loads and compiles as it is."""
    m = tmp_path / "m.yaml"
    m.write_text(make())
    compile_plan(load_policy(m), Target())


def test_init_from_wit_include(tmp_path):
    """`include wasi:cli/imports` brings in every standard capability."""
    wit = tmp_path / "w.wit"
    wit.write_text("package a:b;\nworld cmd {\n  include wasi:cli/imports@0.2.0;\n  export wasi:cli/run@0.2.0;\n}\n")
    text = init.from_wit(str(wit))
    for cap in ("wasi:cli/environment", "wasi:filesystem/preopens", "wasi:sockets/tcp", "wasi:random/insecure"):
        assert f"  {cap}: " in text
    m = tmp_path / "m.yaml"
    m.write_text(text)
    compile_plan(load_policy(m), Target())


def test_runner_routes_by_magic_or_flag(tmp_path):
    """`run` sends a file with the \\0asm magic (or --wasm) to the WASI path; other files stay native."""
    assert _is_wasm(str(WASM / "hello.wasm"))
    assert not _is_wasm("/bin/sh") and not _is_wasm(str(tmp_path / "missing"))
    assert parse_args(["m.yaml", "--wasm", "--", "x"]).wasm


def test_host_plan_additions(tmp_path):
    """The host plan keeps every manifest rule and adds only the runtime's paths, threads, memory overhead."""
    m = tmp_path / "m.yaml"
    m.write_text("sandboxer: 1\nname: t\ndescription: t\nimports:\n  wasi:cli/stdout: {}\n"
                 "limits: {memory: 64Mi, pids: 4, wall-time: 5s, address-space: 1Gi}\n")
    plan = compile_plan(load_policy(m), Target())
    host, bpf = host_plan.derive_host_plan(plan)
    assert bpf and host["cgroups"]["memory_max"] == 64 * 2**20 + host_plan.HOST_MEMORY_OVERHEAD
    assert host["cgroups"]["pids_max"] == 4 + host_plan.HOST_THREADS
    # The wall time stays the manifest's: the launcher's kill comes HOST_WALL_GRACE_S later (LaunchOptions.grace_s).
    assert "AS" not in host["rlimits"] and host["wall_time_s"] == 5
    # The forked host executes nothing and imports nothing after Landlock: no path rule is added.
    assert host["landlock"]["paths"] == plan["landlock"]["paths"]
    syscalls = {e["name"]: e for e in host["seccomp"]["syscalls"]}
    assert syscalls["clone"]["rules"][0]["when"][0]["value"] == host_plan.CLONE_THREAD
    assert syscalls["execve"]["action"] == syscalls["execveat"]["action"] == "violation"
    assert plan["cgroups"]["memory_max"] == 64 * 2**20  # the caller's plan is untouched
    assert {e["name"]: e["action"] for e in plan["seccomp"]["syscalls"]}["execve"] == "allow"


def test_host_plan_cache(tmp_path, monkeypatch):
    """The derived host plan is cached per plan: a second derivation reads it back, equal, without the assembler."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    m = tmp_path / "m.yaml"
    m.write_text("sandboxer: 1\nname: t\ndescription: t\nimports:\n  wasi:cli/stdout: {}\n")
    plan = compile_plan(load_policy(m), Target())
    first = host_plan.cached_host_plan(plan)
    assert first == host_plan.derive_host_plan(plan)
    monkeypatch.setattr(host_plan, "derive_host_plan", lambda plan: pytest.fail("derived again"))
    assert host_plan.cached_host_plan(plan) == first
