"""Packaging hook: the `sandboxer` command is the native front (sandboxer/launch/front.c) where a C
compiler is available, with the Python launcher installed next to it as `sandboxer-py`.

Everything else is declared in pyproject.toml. Without a compiler the Python script is installed as
`sandboxer` itself: the same behaviour, ~15 ms more per `sandboxer run` (benchmarks/launch.py).
"""

import hashlib
import os
import subprocess
import sys

from setuptools import setup  # first: it puts its distutils in place
from distutils.command.build_scripts import build_scripts  # setuptools provides distutils (its own copy)
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandboxer.launch.build_front import compile_front  # noqa: E402


HERE = os.path.dirname(os.path.abspath(__file__))


def build_id() -> str:
    """A digest of the package's sources: cached plans and launch images belong to exactly this build, so a
    patched rebuild that keeps the version number never serves plans an older compiler made."""
    h = hashlib.sha256()
    root = os.path.join(HERE, "sandboxer")
    for d, dirs, files in sorted(os.walk(root)):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in sorted(files):
            if f.endswith((".py", ".yaml", ".c")) and f != "_build.py":
                path = os.path.join(d, f)
                h.update(os.path.relpath(path, root).encode() + b"\0")
                with open(path, "rb") as fh:
                    h.update(fh.read() + b"\0")
    return h.hexdigest()[:16]


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        with open(os.path.join(self.build_lib, "sandboxer", "_build.py"), "w") as f:
            f.write('"""Written by setup.py: this build\'s identity (sandboxer/cache.py keys plans with it)."""\n\n'
                    f'BUILD_ID = "{build_id()}"\n')


class BuildScripts(build_scripts):
    def run(self) -> None:
        # Always copy again: an up-to-date check would keep last build's native `sandboxer` as the
        # "script", and the rename below would then install the front as its own sandboxer-py.
        self.force = True
        super().run()  # bin/sandboxer, its #! line set to the target interpreter
        command = os.path.join(self.build_dir, "sandboxer")
        native = command + ".native"
        try:
            compile_front(native, build=build_id())
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", "") or e
            self.warn(f"the native front was not built ({detail}); `sandboxer` is the Python launcher")
            return
        os.replace(command, os.path.join(self.build_dir, "sandboxer-py"))
        os.replace(native, command)


class PlatformDistribution(Distribution):
    """The wheel holds a native executable: it is for this platform, not py3-none-any."""

    def has_ext_modules(self) -> bool:
        return True


cmdclass = {"build_py": BuildPy, "build_scripts": BuildScripts}
try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1: the wheel package's
    try:
        from wheel.bdist_wheel import bdist_wheel
    except ImportError:
        bdist_wheel = None
if bdist_wheel is not None:

    class PlatformWheel(bdist_wheel):
        """py3-none-<platform>: the front does not link libpython, so any Python 3 on this platform will do."""

        def get_tag(self) -> tuple[str, str, str]:
            return ("py3", "none", super().get_tag()[2])

    cmdclass["bdist_wheel"] = PlatformWheel

setup(cmdclass=cmdclass, distclass=PlatformDistribution)
