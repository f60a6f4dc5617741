"""`sandboxer audit FILE`: summarise audit records, follow a live file, or print the manifest patch.

The typer command in sandboxer/cli.py only parses flags and calls `main`. Output goes to the
sys.stdout / sys.stderr of the moment (so typer's test runner captures it); the exit status is
returned: 0, or 2 for a usage problem or a file that cannot be read.
"""

from __future__ import annotations

import json
import os
import sys
import time

from ..errors import EXIT_USAGE, UsageError

POLL_S = 0.2


def main(file: str, *, as_json: bool = False, follow: bool = False, suggest: bool = False,
         stop=None, poll_s: float = POLL_S, sandbox: str | None = None) -> int:
    """Run the command; `stop()` returning True ends --follow (tests), as SIGINT does."""
    try:
        if suggest and (as_json or follow):
            raise UsageError("--suggest prints a manifest patch: use it without --json and --follow")
        if follow and file == "-":
            raise UsageError("--follow needs a file, not standard input")
        stream = None if file == "-" else _open(file, binary=follow)
    except UsageError as e:
        sys.stderr.write(e.render() + "\n")
        return EXIT_USAGE
    from .summary import read_records, render_record, render_text, summarize, Reader
    from .suggest import merge_suggestions

    try:
        if follow:
            return _follow(stream, file, as_json, stop, poll_s, Reader(), render_record, render_text, summarize)
        if stream is None:
            records, reader = read_records(sys.stdin)
        else:
            with stream:
                records, reader = read_records(stream)
    except OSError as e:
        sys.stderr.write(f"sandboxer: cannot read {file}: {e.strerror or e}\n")
        return EXIT_USAGE
    _report_skipped(file, reader)
    if sandbox:  # a sandbox id, or its first characters as the summary prints them
        records = [r for r in records if str(r.get("id", "")).startswith(sandbox)]
        if not records:
            sys.stderr.write(f"sandboxer: {file}: no records of sandbox {sandbox}\n")
            return EXIT_USAGE
    if suggest:
        sys.stdout.write(merge_suggestions(r for r in records if r.get("type") == "violation"))
        return 0
    summary = summarize(records, reader.skipped)
    _report_unreadable(file, summary)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(summary))
    return 0


def _open(file: str, binary: bool = False):
    try:
        if binary:
            return open(file, "rb")
        return open(file, "r", encoding="utf-8", errors="replace", newline="")
    except OSError as e:
        raise UsageError(f"cannot read audit file {file}: {e.strerror or e}") from None


def _report_skipped(file: str, reader) -> None:
    if reader.skipped:
        sys.stderr.write(f"sandboxer: {file}: skipped {reader.skipped} unreadable line"
                         f"{'s' if reader.skipped != 1 else ''} (first: line {reader.first_skipped})\n")


def _report_unreadable(file: str, summary: dict) -> None:
    n = summary.get("unreadable_records", 0)
    if n:
        sys.stderr.write(f"sandboxer: {file}: {n} record{'s' if n != 1 else ''} "
                         "with fields of the wrong type ignored\n")


def _follow(stream, file: str, as_json: bool, stop, poll_s: float, reader, render_record, render_text,
            summarize) -> int:
    """Print each record as it is appended (a line each; JSON lines with --json) until SIGINT or `stop()`.

    A partial last line waits for its newline; a file truncated under us is read again from the start.
    On SIGINT the text mode ends with the summary of everything read.
    """
    records: list[dict] = []
    pending = b""
    try:
        with stream:
            while True:
                chunk = stream.readline()
                if chunk:
                    pending += chunk
                    if not pending.endswith(b"\n"):
                        continue
                    line, pending = pending, b""
                    rec = reader.parse(line)
                    if rec is not None:
                        records.append(rec)
                        out = json.dumps(rec, ensure_ascii=False) if as_json else render_record(rec)
                        sys.stdout.write(out + "\n")
                        sys.stdout.flush()
                    continue
                if stop is not None and stop():
                    break
                try:
                    if os.fstat(stream.fileno()).st_size < stream.tell():
                        stream.seek(0)  # truncated (rotated in place): start over
                        pending = b""
                except OSError:
                    pass
                time.sleep(poll_s)
    except KeyboardInterrupt:
        pass
    except OSError as e:
        sys.stderr.write(f"sandboxer: cannot read {file}: {e.strerror or e}\n")
        return EXIT_USAGE
    _report_skipped(file, reader)
    if not as_json:
        summary = summarize(records, reader.skipped)
        sys.stdout.write("\n" + render_text(summary))
    return 0
