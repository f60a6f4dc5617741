"""Run a function in a forked child and bring back its result (pytest-forked is broken on pytest 9).

Restrictions (seccomp, Landlock, namespaces) are applied only inside such children, never in the
test process itself.
"""

from __future__ import annotations

import os
import pickle
import signal
import traceback
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class ChildResult:
    """What a forked child did: returned a value, raised, exited, or died of a signal."""

    value: Any = None
    error: str | None = None
    exit_code: int | None = None
    signal: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.signal is None and self.exit_code == 0


def in_child(fn: Callable[..., Any], *args: Any, timeout: float = 30.0) -> ChildResult:
    """Fork, run fn(*args) in the child, and return what happened there."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            payload = pickle.dumps(("value", fn(*args)))
        except BaseException:  # noqa: BLE001 - everything is reported to the parent
            payload = pickle.dumps(("error", traceback.format_exc()))
        try:
            os.write(w, payload)
        finally:
            os._exit(0)
    os.close(w)
    signal.alarm(int(timeout) + 1)
    try:
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
    finally:
        signal.alarm(0)
        os.close(r)
    result = ChildResult()
    if os.WIFSIGNALED(status):
        result.signal = os.WTERMSIG(status)
    else:
        result.exit_code = os.WEXITSTATUS(status)
    if chunks:
        kind, obj = pickle.loads(b"".join(chunks))
        if kind == "value":
            result.value = obj
        else:
            result.error = obj
    return result
