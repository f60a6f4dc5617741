"""The seccomp section → a classic-BPF program: arch guard, then a binary search over syscall numbers.

Pure: this builds bytes, it never loads them. Layout of the program:

    ld arch; jeq AUDIT_ARCH else KILL_PROCESS      foreign arch (i386 int 0x80, arm32) is killed
    ld nr;   binary search over number intervals   x32 numbers (>= 0x40000000) are killed
    leaf:    ret ACTION | argument checks, first match wins, then the syscall's own fallback

Consecutive numbers with the same plain action share one interval, so the search depth is
log2(intervals), and every leaf reached by `nr` alone with `ret ALLOW` is constant for the
kernel's action cache (those calls then cost no BPF at all). With `optimize=False` the same
decisions are laid out as a linear chain of `jeq` tests (the reference for the benchmark).
"""

from __future__ import annotations

import errno as _errno
import struct

from .tables import table

# BPF opcodes (linux/bpf_common.h)
LD_W_ABS = 0x20
LD_IMM = 0x00
ALU_AND_K = 0x54
JMP_JA = 0x05
JEQ_K, JGT_K, JGE_K, JSET_K = 0x15, 0x25, 0x35, 0x45
RET_K = 0x06

RET_KILL_PROCESS = 0x80000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

OFF_NR, OFF_ARCH = 0, 4
X32_SYSCALL_BIT = 0x40000000

Insn = tuple[int, int, int, int]  # code, jt, jf, k


def action_value(action: str, violation: str) -> int:
    """The SECCOMP_RET_* value of a plan action ('violation' resolves to the plan's own)."""
    if action == "violation":
        action = violation
    if action == "allow":
        return RET_ALLOW
    if action == "kill":
        return RET_KILL_PROCESS
    if action == "log":
        return RET_LOG
    if action == "notify":
        return RET_USER_NOTIF
    if action.startswith("errno:"):
        return RET_ERRNO | getattr(_errno, action.removeprefix("errno:"))
    raise ValueError(f"unknown seccomp action {action!r}")


def assemble(section: dict, *, violation: str | None = None, optimize: bool = True) -> bytes:
    """The BPF program for a plan's seccomp section (`violation` overrides the plan's action)."""
    tbl = table(section["arch"])
    viol = violation or section["violation"]
    unknown = action_value(section["unknown"], viol)
    by_nr = {e["nr"]: e for e in section["syscalls"]}
    known = set(tbl.SYSCALLS.values())

    # One leaf per number; plain leaves are ints (a return value), checked ones are code.
    per_nr: list[tuple[int, object]] = []
    for nr in range(tbl.MAX_NR + 1):
        entry = by_nr.get(nr)
        if entry is not None and entry.get("rules"):
            leaf: object = tuple(_checked_leaf(entry, viol))
        elif entry is not None:
            leaf = action_value(entry["action"], viol)
        else:
            leaf = action_value("violation", viol) if nr in known else unknown
        per_nr.append((nr, leaf))
    x32 = section["arch"] == "x86_64"
    if optimize:
        leaves: list[tuple[int, object]] = []
        for nr, leaf in per_nr:  # merge runs of the same plain action into one interval
            if not (leaves and not isinstance(leaf, tuple) and leaves[-1][1] == leaf):
                leaves.append((nr, leaf))
        if leaves[-1][1] != unknown:
            leaves.append((tbl.MAX_NR + 1, unknown))
        if x32:
            leaves.append((X32_SYSCALL_BIT, RET_KILL_PROCESS))
        body = _tree(leaves)
    else:
        body = _chain([(nr, leaf) for nr, leaf in per_nr if leaf != unknown], unknown, x32)

    prog: list[Insn] = [
        (LD_W_ABS, 0, 0, OFF_ARCH),
        (JEQ_K, 1, 0, tbl.AUDIT_ARCH),
        (RET_K, 0, 0, RET_KILL_PROCESS),
        (LD_W_ABS, 0, 0, OFF_NR),
    ]
    prog += body
    return b"".join(struct.pack("<HBBI", *i) for i in prog)


def _leaf_code(leaf: object) -> list[Insn]:
    return list(leaf) if isinstance(leaf, tuple) else [(RET_K, 0, 0, leaf)]


def _tree(leaves: list[tuple[int, object]]) -> list[Insn]:
    """Binary search: `nr >= start[mid]` goes right; each subtree is laid out contiguously."""
    if len(leaves) == 1:
        return _leaf_code(leaves[0][1])
    mid = len(leaves) // 2
    left, right = _tree(leaves[:mid]), _tree(leaves[mid:])
    if len(left) <= 255:
        return [(JGE_K, len(left), 0, leaves[mid][0]), *left, *right]
    return [(JGE_K, 0, 1, leaves[mid][0]), (JMP_JA, 0, 0, len(left)), *left, *right]


def _chain(leaves: list[tuple[int, object]], fallthrough: int, x32: bool) -> list[Insn]:
    """Unoptimised reference: one `jeq nr` test per known syscall, in number order."""
    out: list[Insn] = []
    for nr, leaf in leaves:
        code = _leaf_code(leaf)
        out += [(JEQ_K, 0, len(code), nr), *code]
    if x32:
        out += [(JGE_K, 0, 1, X32_SYSCALL_BIT), (RET_K, 0, 0, RET_KILL_PROCESS)]
    return out + [(RET_K, 0, 0, fallthrough)]


def _checked_leaf(entry: dict, violation: str) -> list[Insn]:
    """Rules in order: all conditions of a rule true → its action; else try the next rule."""
    code: list[Insn] = []
    for rule in entry["rules"]:
        body = _conditions(rule["when"])  # jumps with jf=FAIL go to the next rule
        body.append((RET_K, 0, 0, action_value(rule["action"], violation)))
        n = len(body)
        code += [(c, n - 1 - i if jt == _FAIL else jt, n - 1 - i if jf == _FAIL else jf, k)
                 for i, (c, jt, jf, k) in enumerate(body)]
    code.append((RET_K, 0, 0, action_value(entry["action"], violation)))
    return code


_FAIL = -1  # placeholder: "jump to the first instruction after this rule's ret"


def _conditions(conds: list[dict]) -> list[Insn]:
    """Straight-line checks; a failed check jumps to _FAIL (patched by the caller)."""
    out: list[Insn] = []
    for c in conds:
        lo_off = 16 + 8 * c["arg"]
        value, mask = c["value"], c.get("mask")
        words = [(lo_off, value & 0xFFFFFFFF, None if mask is None else mask & 0xFFFFFFFF)]
        if c["width"] == 64:
            words.insert(0, (lo_off + 4, value >> 32, None if mask is None else mask >> 32))
        op = c["op"]
        if op in ("eq", "masked_eq"):
            for off, v, m in words:
                if m == 0 and v == 0:
                    continue  # this word cannot matter
                out.append((LD_W_ABS, 0, 0, off))
                if m is not None and m != 0xFFFFFFFF:
                    out.append((ALU_AND_K, 0, 0, m))
                out.append((JEQ_K, 0, _FAIL, v))
        elif op == "ne":
            if len(words) == 1:
                out += [(LD_W_ABS, 0, 0, words[0][0]), (JEQ_K, _FAIL, 0, words[0][1])]
            else:  # true if either word differs
                (hi_off, hi, _), (lo_off2, lo, _) = words
                out += [(LD_W_ABS, 0, 0, hi_off), (JEQ_K, 0, 2, hi),
                        (LD_W_ABS, 0, 0, lo_off2), (JEQ_K, _FAIL, 0, lo)]
        elif op in ("lt", "le", "gt", "ge"):
            if len(words) != 1:
                raise ValueError("ordered comparisons are compiled on 32-bit arguments only")
            off, v, _ = words[0]
            out.append((LD_W_ABS, 0, 0, off))
            out.append({"ge": (JGE_K, 0, _FAIL, v), "gt": (JGT_K, 0, _FAIL, v),
                        "lt": (JGE_K, _FAIL, 0, v), "le": (JGT_K, _FAIL, 0, v)}[op])
        else:
            raise ValueError(f"unknown comparison {op!r}")
    return out


def program_length(prog: bytes) -> int:
    return len(prog) // 8
