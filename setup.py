"""Packaging hook: the `sandboxer` command is the native front (sandboxer/launch/front.c) where a C
compiler is available, with the Python launcher installed next to it as `sandboxer-py`.

Everything else is declared in pyproject.toml. Without a compiler the Python script is installed as
`sandboxer` itself: the same behaviour, ~15 ms more per `sandboxer run` (benchmarks/launch.py).
"""

import os
import subprocess
import sys

from setuptools import setup  # first: it puts its distutils in place
from distutils.command.build_scripts import build_scripts  # setuptools provides distutils (its own copy)
from setuptools.dist import Distribution

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandboxer.launch.build_front import compile_front  # noqa: E402


class BuildScripts(build_scripts):
    def run(self) -> None:
        super().run()  # bin/sandboxer, its #! line set to the target interpreter
        command = os.path.join(self.build_dir, "sandboxer")
        native = command + ".native"
        try:
            compile_front(native)
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", "") or e
            self.warn(f"the native front was not built ({detail}); `sandboxer` is the Python launcher")
            return
        os.replace(command, os.path.join(self.build_dir, "sandboxer-py"))
        os.replace(native, command)


class PlatformDistribution(Distribution):
    """The wheel holds a native executable: tag it for this platform, not py3-none-any."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_scripts": BuildScripts}, distclass=PlatformDistribution)
