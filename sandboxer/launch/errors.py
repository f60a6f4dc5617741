"""Launch stage errors: what went wrong before (or instead of) exec, with the exit code to leave with."""

from __future__ import annotations

from sandboxer.errors import EXIT_LAUNCH, SandboxerError


class LaunchError(SandboxerError):
    """The workload could not be started as the plan asks: 125 (sandboxer), 126 (not executable), 127 (not found).

    The message is complete and user-facing; render() prefixes it with "sandboxer: ".
    """

    def __init__(self, message: str, exit_code: int = EXIT_LAUNCH) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
