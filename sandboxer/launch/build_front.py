"""Build step: compile the native front (launch/front.c) into an executable; used by setup.py and the tests.

Hardened as distributions build system tools: PIE, full RELRO, stack protector, _FORTIFY_SOURCE.
Linked statically where the C library allows it (-static-pie keeps ASLR): no dynamic loader to run on
every launch (~0.15 ms, benchmarks/launch.py) and nothing for LD_PRELOAD to inject into; the front
uses no NSS, iconv or dlopen, the parts of glibc that need shared objects. Dynamic PIE otherwise.
Being static, the front carries the C library of its build: a glibc fix reaches it when sandboxer is
installed again. CFLAGS and LDFLAGS from the environment are added last (distribution builds).
The sandboxer version is compiled in: it is part of the image key (launch/image.py).
"""

from __future__ import annotations

import os
import platform
import subprocess

from sandboxer import __version__

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "front.c")
FLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong",
         "-fstack-clash-protection", "-fPIE", "-Wl,-z,relro,-z,now"]
CONTROL_FLOW = {"x86_64": ["-fcf-protection"], "aarch64": ["-mbranch-protection=standard"]}
LINK = (["-static-pie"], ["-pie"])  # the first that links


def compile_front(out: str, cc: str | None = None, build: str = "source") -> None:
    """Compile front.c to `out`; raises OSError (no compiler) or subprocess.CalledProcessError (it failed).

    `build`: the build's identity (cache.BUILD_ID of the package installed with it; "source" for a tree)."""
    compiler = (cc or os.environ.get("CC") or "cc").split()
    flags = FLAGS + CONTROL_FLOW.get(platform.machine(), [])
    user = os.environ.get("CFLAGS", "").split() + os.environ.get("LDFLAGS", "").split()
    for i, link in enumerate(LINK):
        try:
            subprocess.run([*compiler, *flags, *link, f'-DSANDBOXER_VERSION="{__version__}"', f'-DSANDBOXER_BUILD="{build}"', "-o", out, SOURCE, *user],
                           check=True, capture_output=True, text=True)
            return
        except subprocess.CalledProcessError:
            if i == len(LINK) - 1:
                raise
