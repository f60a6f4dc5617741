"""Errors that carry their own exit code and render their own message (no tracebacks for users)."""

from __future__ import annotations

EXIT_USAGE = 2  # bad manifest or usage
EXIT_LAUNCH = 125  # sandboxer failed before exec
EXIT_NOEXEC = 126
EXIT_NOTFOUND = 127


class Span(tuple):
    """Where a manifest node came from: file, 1-based line and column (a named triple, cheap to import)."""

    __slots__ = ()

    def __new__(cls, file: str, line: int, col: int) -> "Span":
        return tuple.__new__(cls, (file, line, col))

    file = property(lambda self: self[0])
    line = property(lambda self: self[1])
    col = property(lambda self: self[2])

    def __repr__(self) -> str:
        return f"Span({self.file!r}, {self.line}, {self.col})"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Diagnostic:
    """One compiler-style problem: where, what, and how to fix it."""

    __slots__ = ("span", "message", "hint", "severity")

    def __init__(self, span: Span | None, message: str, hint: str | None = None, severity: str = "error") -> None:
        self.span, self.message, self.hint, self.severity = span, message, hint, severity

    def __repr__(self) -> str:
        return f"Diagnostic({self.span!r}, {self.message!r}, {self.hint!r}, {self.severity!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Diagnostic) and repr(self) == repr(other)

    def render(self, source_lines: dict[str, list[str]] | None = None) -> str:
        where = f"{self.span}: " if self.span else ""
        out = [f"{where}{self.severity}: {self.message}"]
        if self.span and source_lines is not None:
            lines = source_lines.get(self.span.file)
            if lines and 0 < self.span.line <= len(lines):
                text = lines[self.span.line - 1].rstrip("\n")
                out.append(f"    {text}")
                out.append("    " + " " * (self.span.col - 1) + "^")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


class SandboxerError(Exception):
    """Base class: a message for the user and the exit code to leave with."""

    exit_code = EXIT_LAUNCH

    def render(self) -> str:
        return f"sandboxer: {self}"


class ManifestError(SandboxerError):
    """All problems found in a manifest, reported at once (exit 2)."""

    exit_code = EXIT_USAGE

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, list[str]] | None = None) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.sources = sources or {}

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        body = "\n".join(d.render(self.sources) for d in self.diagnostics)
        n = sum(1 for d in self.diagnostics if d.severity == "error")
        return f"{body}\n{n} error{'s' if n != 1 else ''} found"


class UsageError(SandboxerError):
    """A bad command line or input file (exit 2)."""

    exit_code = EXIT_USAGE


class CompatError(SandboxerError):
    """A granted capability the target or host cannot enforce, under compat: strict (exit 125... or 2 at compile)."""

    exit_code = EXIT_LAUNCH
