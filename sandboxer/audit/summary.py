"""Stage ⑤, reading back: audit records → a summary per sandbox (violations by capability, limits, exits).

`summarize` builds one JSON-able structure; `render_text` is the same summary for people, and
`render_record` is one record in one line, for `sandboxer audit --follow`. Records come from any
writer: every field is read defensively, and a record this reader cannot make sense of is counted
as unreadable, never a traceback.
"""

from __future__ import annotations

import json

from .suggest import Patch, describe, parse_suggestion

MAX_EXAMPLES = 3
MAX_SUGGEST_LINES = 5
RUNTIME_GROUP = "runtime base (no capability needed)"
UNMAPPED_GROUP = "unmapped (the records name no capability and no reason)"
NEVER_GROUP = "never granted"


class Reader:
    """Parses record lines one at a time, counting those that are not records (first line number kept)."""

    def __init__(self) -> None:
        self.line_no = 0
        self.skipped = 0
        self.first_skipped: int | None = None

    def parse(self, line: str | bytes) -> dict | None:
        self.line_no += 1
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        if not line.strip():
            return None
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not (isinstance(rec, dict) and isinstance(rec.get("type"), str) and isinstance(rec.get("id"), str)):
            self.skipped += 1
            if self.first_skipped is None:
                self.first_skipped = self.line_no
            return None
        return rec


def read_records(lines) -> tuple[list[dict], Reader]:
    """Records from an iterable of lines, and the reader that counted what it skipped."""
    reader = Reader()
    return [r for r in map(reader.parse, lines) if r is not None], reader


class _Sandbox:
    def __init__(self, sid: str) -> None:
        self.id = sid
        self.launch: dict | None = None
        self.groups: dict[tuple, dict] = {}
        self.patches: dict[tuple, Patch] = {}
        self.limits: dict[tuple, dict] = {}
        self.exits: list[dict] = []
        self.violations = 0
        self.violation_records = 0  # records in the file (a folded record stands for several violations)
        self.other = 0


def summarize(records, skipped: int = 0) -> dict:
    """The summary of a record stream, per sandbox id in order of first appearance."""
    boxes: dict[str, _Sandbox] = {}
    unreadable = 0
    for rec in records:
        box = boxes.get(rec.get("id"))
        if box is None:
            box = boxes[rec["id"]] = _Sandbox(rec["id"])
        try:
            _add(box, rec)
        except (TypeError, ValueError, AttributeError, KeyError):
            unreadable += 1  # a record of a known type whose fields are not what the schema says
    return {"sandboxes": [_box_summary(b) for b in boxes.values()], "skipped_lines": skipped,
            "unreadable_records": unreadable}


def _add(box: _Sandbox, rec: dict) -> None:
    t = rec["type"]
    time = rec.get("time") if isinstance(rec.get("time"), str) else None
    if t == "launch":
        box.launch = _launch_summary(rec)
    elif t == "violation":
        what = describe(rec)
        cap, never = _str(rec.get("capability")), _str(rec.get("never"))
        key = (cap, None) if cap else (None, never) if never else (None, None)
        g = box.groups.get(key)
        if g is None:
            g = box.groups[key] = {
                "capability": cap, "never": never if not cap else None, "count": 0, "first": time,
                "last": time, "mechanisms": [], "actions": {}, "would_deny": 0, "examples": [],
                "more_examples": 0, "suggest": [], "unresolved": 0, "note": _str(rec.get("note")),
            }
            box.patches[key] = Patch()
        n = rec["folded"] if isinstance(rec.get("folded"), int) and rec["folded"] > 0 else 1  # a folded record stands for N
        g["count"] += n
        box.violations += n
        box.violation_records += 1
        if time:
            g["first"] = min(g["first"] or time, time)
            g["last"] = max(g["last"] or time, time)
        mech = _str(rec.get("mechanism")) or "?"
        if mech not in g["mechanisms"]:
            g["mechanisms"].append(mech)
        action = _str(rec.get("action")) or "?"
        g["actions"][action] = g["actions"].get(action, 0) + n
        g["would_deny"] += n if rec.get("would_deny") is True else 0
        if what not in g["examples"]:
            if len(g["examples"]) < MAX_EXAMPLES:
                g["examples"].append(what)
            else:
                g["more_examples"] += 1
        sug = rec.get("suggest")
        imports = parse_suggestion(sug) if isinstance(sug, str) else None
        if imports is None or not box.patches[key].add(imports):
            g["unresolved"] += bool(cap)
    elif t == "limit":
        kind, limit = str(rec.get("kind")), rec.get("limit")
        key = (kind, json.dumps(limit))
        lim = box.limits.get(key)
        if lim is None:
            lim = box.limits[key] = {"kind": kind, "limit": limit, "records": 0, "count": None,
                                     "first": time, "last": time, "detail": rec.get("detail")}
        lim["records"] += 1
        if isinstance(rec.get("count"), int):
            lim["count"] = max(lim["count"] or 0, rec["count"])  # cgroup counters only grow
        if time:
            lim["first"], lim["last"] = min(lim["first"] or time, time), max(lim["last"] or time, time)
        lim["detail"] = rec.get("detail", lim["detail"])  # the latest says the most
    elif t == "exit":
        cpu = rec.get("cpu") if isinstance(rec.get("cpu"), dict) else {}
        records = rec.get("records") if isinstance(rec.get("records"), dict) else {}
        box.exits.append({"time": time, "code": rec.get("code"), "signal": rec.get("signal"),
                          "exit_code": rec.get("exit_code"), "duration_s": rec.get("duration_s"),
                          "cpu": {"user_s": cpu.get("user_s"), "sys_s": cpu.get("sys_s")},
                          "memory_peak_bytes": rec.get("memory_peak_bytes"), "tasks": rec.get("tasks"),
                          "violations_recorded": records.get("violations")})
        if _str(rec.get("note")):
            box.exits[-1]["note"] = rec["note"]  # e.g. refused before running
    else:
        box.other += 1  # a newer record type: readers ignore what they do not know


def _str(value) -> str | None:
    """A string field, or None for anything else (a reader cannot trust a writer's types)."""
    return value if isinstance(value, str) and value else None


def _launch_summary(rec: dict) -> dict:
    manifest = rec.get("manifest") if isinstance(rec.get("manifest"), dict) else {}
    host = rec.get("host") if isinstance(rec.get("host"), dict) else {}
    enforce = rec.get("enforce") if isinstance(rec.get("enforce"), dict) else {}
    command = rec.get("command")
    return {"time": rec.get("time"), "command": [str(c) for c in command] if isinstance(command, list) else [],
            "manifest": manifest.get("path"), "sha256": manifest.get("sha256"), "mode": rec.get("mode"),
            "supervisor_pid": rec.get("supervisor_pid"),
            "host": {"kernel": host.get("kernel"), "arch": host.get("arch")},
            "mechanisms": mechanisms(enforce), "landlock_observable": _landlock_observable(enforce),
            "warnings": [str(w) for w in rec.get("warnings") or ()]}


def _landlock_observable(enforce: dict) -> dict | None:
    ll = enforce.get("landlock")
    if not isinstance(ll, dict) or ll.get("observable") is not False:
        return None
    return {"observable": False, "note": ll.get("observable_note")}


def mechanisms(enforce: dict) -> list[str]:
    """What each mechanism enforced, one short phrase each."""
    out = []
    sc = enforce.get("seccomp")
    if isinstance(sc, dict):
        parts = [f"{sc.get('instructions')} insns", f"arch guard {sc.get('arch_guard')}",
                 f"violations {sc.get('violation_action')}"]
        if sc.get("notify"):
            parts.append("supervised")
        out.append(f"seccomp: {', '.join(parts)}")
    ll = enforce.get("landlock")
    if isinstance(ll, dict):
        if ll.get("enforced"):
            text = f"landlock: ABI {ll.get('abi')}"
            if ll.get("plan_abi") not in (None, ll.get("abi")):
                text += f" (plan ABI {ll.get('plan_abi')})"
        else:
            text = "landlock: not enforced"
        degr = ll.get("degradations") or []
        if degr:
            text += f", {len(degr)} degradation{'s' if len(degr) != 1 else ''}: {'; '.join(map(str, degr))}"
        out.append(text)
    cg = enforce.get("cgroups")
    if isinstance(cg, dict):
        if cg.get("version"):
            limits = cg.get("limits") if isinstance(cg.get("limits"), dict) else {}
            shown = ", ".join(f"{k} {v}" for k, v in limits.items())
            out.append(f"cgroups: {cg['version']}" + (f" ({shown})" if shown else ""))
        else:
            out.append("cgroups: none")
    if enforce.get("netns"):
        out.append(f"netns: {enforce['netns']}")
    rl = enforce.get("rlimits")
    if isinstance(rl, dict) and rl:
        out.append("rlimits: " + ", ".join(f"{k} {_rlimit(v)}" for k, v in rl.items()))
    return out


def _rlimit(v) -> str:
    if isinstance(v, list) and len(v) == 2:
        soft, hard = ("unlimited" if x is None else str(x) for x in v)
        return soft if soft == hard else f"{soft}/{hard}"
    return str(v)


def _box_summary(box: _Sandbox) -> dict:
    groups = []
    for key, g in box.groups.items():
        lines = box.patches[key].flow_lines()
        g["suggest"] = lines[:MAX_SUGGEST_LINES]
        g["more_suggest"] = max(0, len(lines) - MAX_SUGGEST_LINES)
        groups.append(g)
    # capabilities first, then never-granted reasons, then the rest; most frequent first within each
    groups.sort(key=lambda g: (g["capability"] is None, g["never"] is None, -g["count"],
                               g["capability"] or g["never"] or ""))
    return {"id": box.id, "launch": box.launch,
            "violations": {"total": box.violations, "groups": groups, **(
                {"records": box.violation_records} if box.violation_records != box.violations else {})},
            "limits": list(box.limits.values()), "exits": box.exits, "other_records": box.other}


# --- text ---------------------------------------------------------------------------------------
def _clock(t: str | None) -> str:
    """HH:MM:SS.mmm of an RFC 3339 time (the launch line gives the date)."""
    return t[11:23] if isinstance(t, str) and len(t) >= 23 else "?"


def _size(n) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def render_text(summary: dict) -> str:
    """The summary for people."""
    out: list[str] = []
    for box in summary["sandboxes"]:
        if out:
            out.append("")
        out += _render_box(box)
    if not summary["sandboxes"]:
        out.append("no audit records")
    return "\n".join(out) + "\n"


def _render_box(box: dict) -> list[str]:
    launch = box["launch"]
    if launch is None:
        out = [f"sandbox {box['id']}: (no launch record)"]
    else:
        cmd = " ".join(launch["command"]) or "?"
        out = [f"sandbox {box['id']}: {cmd}"]
        bits = [f"started {launch['time']}", f"mode {launch['mode']}"]
        if launch["manifest"]:
            bits.insert(0, f"manifest {launch['manifest']}")
        host = launch["host"]
        if host.get("kernel") or host.get("arch"):
            bits.append(f"Linux {host.get('kernel')} {host.get('arch')}")
        out.append("  " + ", ".join(bits))
        if launch["mechanisms"]:
            out.append("  enforced:")
            out += [f"    {m}" for m in launch["mechanisms"]]
        if launch["landlock_observable"]:
            note = launch["landlock_observable"].get("note")
            out.append(f"  Landlock denials are not recorded here{': ' + note if note else ''}")
        out += [f"  warning: {w}" for w in launch["warnings"]]
    v = box["violations"]
    if v["total"]:
        fixable = sum(g["count"] for g in v["groups"] if g["capability"])
        never = sum(g["count"] for g in v["groups"] if g["never"])
        parts = [f"{fixable} a manifest change would allow"] if fixable else []
        parts += [f"{never} never granted"] if never else []
        rest = v["total"] - fixable - never
        parts += [f"{rest} needing no capability"] if rest else []
        out.append(f"  violations: {v['total']} ({', '.join(parts)})")
        for g in v["groups"]:
            out += _render_group(g)
    else:
        out.append("  violations: none")
    for lim in box["limits"]:
        n = lim["count"] if lim["count"] is not None else lim["records"]
        when = _clock(lim["first"]) + (f" … {_clock(lim['last'])}" if lim["last"] != lim["first"] else "")
        limit = "" if lim["limit"] is None else f" {lim['limit']}"
        detail = f": {lim['detail']}" if lim["detail"] else ""
        out.append(f"  limit {lim['kind']}{limit} hit {n}x ({when}){detail}")
    for e in box["exits"]:
        line = "  " + _render_exit(e)
        held = v.get("records", v["total"])
        if isinstance(e["violations_recorded"], int) and e["violations_recorded"] != held:
            gap = abs(e["violations_recorded"] - held)
            line += f" (this file holds {held}: {gap} unreadable or missing)"
        out.append(line)
    if not box["exits"]:
        out.append("  exit: not recorded (still running, or the launcher was killed)")
    return out


def _render_group(g: dict) -> list[str]:
    head = g["capability"] or (NEVER_GROUP if g["never"] else RUNTIME_GROUP if g["note"] else UNMAPPED_GROUP)
    when = _clock(g["first"]) + (f" … {_clock(g['last'])}" if g["last"] != g["first"] else "")
    actions = ", ".join(f"{a} {n}x" if len(g["actions"]) > 1 else a for a, n in g["actions"].items())
    if g["would_deny"]:
        actions += f"; would deny {g['would_deny']}x (complain mode)"
    out = [f"    {head}: {g['count']}x, {when}, {'/'.join(g['mechanisms'])} → {actions}"]
    examples = ", ".join(g["examples"]) + (f", … {g['more_examples']} more" if g["more_examples"] else "")
    out.append(f"      e.g. {examples}")
    if g["never"]:
        out.append(f"      why: {g['never']}")
    for line in g["suggest"]:
        out.append(f"      suggest: {line}")
    if g["more_suggest"]:
        out.append(f"      … {g['more_suggest']} more (sandboxer audit FILE --suggest prints them all)")
    if g["unresolved"]:
        out.append(f"      {_plural(g['unresolved'], 'record')} name no absolute path: no exact line to suggest")
    if g["capability"] is None and g["never"] is None and g["note"]:
        out.append(f"      note: {g['note']}")
    return out


def _render_exit(e: dict) -> str:
    if e["signal"]:
        how = f"killed by {e['signal']}"
    elif e["code"] is not None:
        how = f"code {e['code']}"
    else:
        how = e.get("note") or "unknown status"
    parts = [f"exit: {how}, sandboxer returned {e['exit_code']}"]
    if isinstance(e["duration_s"], (int, float)):
        parts.append(f"after {e['duration_s']:.3f} s")
    cpu = e["cpu"]
    if isinstance(cpu.get("user_s"), (int, float)) and isinstance(cpu.get("sys_s"), (int, float)):
        parts.append(f"cpu {cpu['user_s']:.3f} s user + {cpu['sys_s']:.3f} s sys")
    if e["memory_peak_bytes"] is not None:
        parts.append(f"peak memory {_size(e['memory_peak_bytes'])}")
    if e["tasks"] is not None:
        parts.append(_plural(e["tasks"], "task"))
    if e["violations_recorded"] is not None:
        parts.append(f"{_plural(e['violations_recorded'], 'violation')} recorded")
    return ", ".join(parts)


def render_record(rec: dict) -> str:
    """One record in one line (for --follow)."""
    t, sid = _clock(rec.get("time")), str(rec.get("id"))[:8]
    kind = rec.get("type")
    try:
        if kind == "launch":
            s = _launch_summary(rec)
            body = f"launch {' '.join(s['command'])} (mode {s['mode']}; {'; '.join(s['mechanisms'])})"
        elif kind == "violation":
            body = f"violation {rec.get('mechanism')} {describe(rec)}"
            if rec.get("exe") or rec.get("pid") is not None:
                body += f" by {rec.get('exe') or '?'}[{rec.get('pid')}]"
            body += f" → {rec.get('action')}"
            if rec.get("would_deny"):
                body += " (would deny)"
            if rec.get("suggest"):
                body += f"; suggest {rec['suggest']}"
            elif rec.get("never"):
                body += f"; never: {rec['never']}"
        elif kind == "limit":
            body = f"limit {rec.get('kind')} {rec.get('limit')}: {rec.get('detail')}"
        elif kind == "exit":
            e = summarize([rec])["sandboxes"][0]["exits"][0]
            body = _render_exit(e)
        else:
            body = str(kind)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        body = f"{kind} (unreadable fields)"
    return f"{t} {sid} {body}"
