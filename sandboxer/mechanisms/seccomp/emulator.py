"""Inspection (pure): run seccomp classic-BPF programs as the kernel does, model its action cache, disassemble.

Everything here reads a program as the kernel receives it: `bytes` of `struct sock_filter[]`
(u16 code, u8 jt, u8 jf, u32 k; little-endian, 8 bytes each) over `struct seccomp_data`
(int nr; u32 arch; u64 instruction_pointer; u64 args[6]), i.e. for x86_64 and other
little-endian targets. Standard library only, so tests and benchmarks can use it anywhere.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "ACTIONS",
    "Insn",
    "MalformedProgram",
    "action_cache",
    "check",
    "decode",
    "describe_action",
    "disassemble",
    "run",
]

# Instruction classes, sizes, modes, operations and sources (include/uapi/linux/bpf_common.h, filter.h).
LD, LDX, ST, STX, ALU, JMP, RET, MISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
W, IMM, ABS, MEM, LEN = 0x00, 0x00, 0x20, 0x60, 0x80
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0,
)
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
K, X = 0x00, 0x08
RET_A = 0x10
TAX, TXA = 0x00, 0x80

BPF_MAXINSNS = 4096  # include/uapi/linux/bpf_common.h
BPF_MEMWORDS = 16  # scratch memory cells M[0..15]
SECCOMP_DATA_SIZE = 64  # sizeof(struct seccomp_data); also what `ld #len` loads

_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF

# SECCOMP_RET_* (include/uapi/linux/seccomp.h): the top 16 bits select the action, the low 16 are data.
ACTIONS: dict[int, str] = {
    0x8000_0000: "KILL_PROCESS",
    0x0000_0000: "KILL_THREAD",
    0x0003_0000: "TRAP",
    0x0005_0000: "ERRNO",
    0x7FC0_0000: "USER_NOTIF",
    0x7FF0_0000: "TRACE",
    0x7FFC_0000: "LOG",
    0x7FFF_0000: "ALLOW",
}
RET_ALLOW = 0x7FFF_0000
_ACTION_MASK = 0xFFFF_0000
_DATA_ACTIONS = frozenset({0x0003_0000, 0x0005_0000, 0x7FF0_0000})  # data is the signal code / errno / tracer message

# Opcodes the kernel accepts in a seccomp filter: bpf_check_classic() (net/core/filter.c) first, then
# the narrower allow-list of seccomp_check_filter() (kernel/seccomp.c). Not MOD, not byte/half loads,
# not indirect loads: those pass the classic check but seccomp rejects them.
_ALLOWED: dict[int, str] = {
    LD | W | ABS: "ld",
    LD | W | LEN: "ld",
    LDX | W | LEN: "ldx",
    LD | IMM: "ld",
    LDX | IMM: "ldx",
    LD | MEM: "ld",
    LDX | MEM: "ldx",
    ST: "st",
    STX: "stx",
    **{ALU | op | src: name for op, name in (
        (ADD, "add"), (SUB, "sub"), (MUL, "mul"), (DIV, "div"), (AND, "and"),
        (OR, "or"), (XOR, "xor"), (LSH, "lsh"), (RSH, "rsh"),
    ) for src in (K, X)},
    ALU | NEG: "neg",
    JMP | JA: "ja",
    **{JMP | op | src: name for op, name in (
        (JEQ, "jeq"), (JGT, "jgt"), (JGE, "jge"), (JSET, "jset"),
    ) for src in (K, X)},
    RET | K: "ret",
    RET | RET_A: "ret",
    MISC | TAX: "tax",
    MISC | TXA: "txa",
}
_COND_JUMPS = frozenset(JMP | op | src for op in (JEQ, JGT, JGE, JSET) for src in (K, X))


class Insn(NamedTuple):
    """One `struct sock_filter`."""

    code: int
    jt: int
    jf: int
    k: int


class MalformedProgram(ValueError):
    """The kernel would refuse this program with EINVAL; the message says which instruction and why."""


def decode(prog: bytes) -> tuple[Insn, ...]:
    """Split `prog` into instructions, without checking them (see `check` for that)."""
    if len(prog) % 8:
        raise MalformedProgram(f"program is {len(prog)} bytes, not a multiple of 8 (sizeof(struct sock_filter))")
    return tuple(Insn(*fields) for fields in struct.iter_unpack("<HBBI", prog))


def check(prog: bytes) -> tuple[Insn, ...]:
    """Decode `prog` and apply every check the kernel applies when a seccomp filter is attached.

    Mirrors bpf_check_basics_ok(), bpf_check_classic() with check_load_and_stores()
    (net/core/filter.c) and seccomp_check_filter() (kernel/seccomp.c). Raises MalformedProgram.
    """
    return _check(bytes(prog))


@lru_cache(maxsize=64)
def _check(prog: bytes) -> tuple[Insn, ...]:
    insns = decode(prog)
    n = len(insns)
    if not 0 < n <= BPF_MAXINSNS:
        raise MalformedProgram(f"program has {n} instructions; the kernel accepts 1 to {BPF_MAXINSNS}")
    for pc, (code, jt, jf, k) in enumerate(insns):
        where = f"instruction {pc} ({code:#06x})"
        if code not in _ALLOWED:
            raise MalformedProgram(f"{where}: opcode not allowed in a seccomp filter")
        if code == ALU | DIV | K and k == 0:
            raise MalformedProgram(f"{where}: division by constant 0")
        if code in (ALU | LSH | K, ALU | RSH | K) and k >= 32:
            raise MalformedProgram(f"{where}: shift by {k} (must be below 32)")
        if code in (LD | MEM, LDX | MEM, ST, STX) and k >= BPF_MEMWORDS:
            raise MalformedProgram(f"{where}: scratch cell M[{k}] does not exist (M[0] to M[{BPF_MEMWORDS - 1}])")
        if code == JMP | JA and k >= n - pc - 1:
            raise MalformedProgram(f"{where}: ja +{k} lands past the last instruction ({n - 1})")
        if code in _COND_JUMPS and (pc + jt + 1 >= n or pc + jf + 1 >= n):
            raise MalformedProgram(
                f"{where}: jump to {pc + 1 + max(jt, jf)} lands past the last instruction ({n - 1})"
            )
        if code == LD | W | ABS and (k >= SECCOMP_DATA_SIZE or k & 3):
            raise MalformedProgram(
                f"{where}: ld [{k}] is not an aligned 32-bit word of struct seccomp_data (0 to 60, step 4)"
            )
    if insns[-1].code not in (RET | K, RET | RET_A):
        raise MalformedProgram(f"instruction {n - 1} ({insns[-1].code:#06x}): the last instruction must be ret")
    _check_load_and_stores(insns)
    return insns


def _check_load_and_stores(insns: tuple[Insn, ...]) -> None:
    # Scratch memory is not cleared between runs, so the kernel proves every M[k] is written on every
    # path before it is read; jumps only go forward, so one pass suffices (check_load_and_stores()).
    masks = [0xFFFF] * len(insns)
    valid = 0
    for pc, (code, jt, jf, k) in enumerate(insns):
        valid &= masks[pc]
        if code in (ST, STX):
            valid |= 1 << k
        elif code in (LD | MEM, LDX | MEM):
            if not valid & (1 << k):
                raise MalformedProgram(f"instruction {pc} ({code:#06x}): reads M[{k}] before every path stores it")
        elif code == JMP | JA:
            masks[pc + 1 + k] &= valid
            valid = 0xFFFF
        elif code in _COND_JUMPS:
            masks[pc + 1 + jt] &= valid
            masks[pc + 1 + jf] &= valid
            valid = 0xFFFF


def _seccomp_data(nr: int, arch: int, args: Iterable[int], ip: int) -> tuple[int, ...]:
    args = tuple(args)
    if len(args) != 6:
        raise ValueError(f"seccomp_data has 6 arguments, got {len(args)}")
    # Negative values are taken as two's complement, as the kernel sees a C long (AT_FDCWD = -100).
    raw = struct.pack("<IIQ6Q", nr & _U32, arch & _U32, ip & _U64, *(a & _U64 for a in args))
    return struct.unpack("<16I", raw)


def run(prog: bytes, nr: int, arch: int, args: Iterable[int] = (0,) * 6, ip: int = 0) -> tuple[int, int]:
    """Run the filter on one system call: (the 32-bit value it returns, instructions executed).

    Raises MalformedProgram (a ValueError) for a program the kernel would refuse to attach.
    """
    insns = check(prog)
    words = _seccomp_data(nr, arch, args, ip)
    a = x = 0
    mem = [0] * BPF_MEMWORDS
    pc = steps = 0
    while True:
        code, jt, jf, k = insns[pc]
        steps += 1
        pc += 1
        cls = code & 0x07
        if cls == JMP:
            op = code & 0xF0
            if op == JA:
                pc += k
                continue
            operand = x if code & X else k
            if op == JEQ:
                taken = a == operand
            elif op == JGT:
                taken = a > operand
            elif op == JGE:
                taken = a >= operand
            else:
                taken = bool(a & operand)
            pc += jt if taken else jf
        elif cls == LD:
            mode = code & 0xE0
            a = words[k >> 2] if mode == ABS else mem[k] if mode == MEM else SECCOMP_DATA_SIZE if mode == LEN else k
        elif cls == RET:
            return (a if code & RET_A else k), steps
        elif cls == ALU:
            op = code & 0xF0
            operand = x if code & X else k
            if op == ADD:
                a = (a + operand) & _U32
            elif op == SUB:
                a = (a - operand) & _U32
            elif op == MUL:
                a = (a * operand) & _U32
            elif op == DIV:
                if operand == 0:
                    # bpf_convert_filter() makes a division by X == 0 end the program with return 0.
                    return 0, steps
                a //= operand
            elif op == AND:
                a &= operand
            elif op == OR:
                a |= operand
            elif op == XOR:
                a ^= operand
            elif op == LSH:
                # The eBPF interpreter masks a register shift count to 5 bits for 32-bit ALU ops.
                a = (a << (operand & 31)) & _U32
            elif op == RSH:
                a >>= operand & 31
            else:  # NEG
                a = -a & _U32
        elif cls == LDX:
            mode = code & 0xE0
            x = mem[k] if mode == MEM else SECCOMP_DATA_SIZE if mode == LEN else k
        elif cls == ST:
            mem[k] = a
        elif cls == STX:
            mem[k] = x
        elif code == MISC | TAX:
            x = a
        else:  # MISC | TXA
            a = x


def _const_allow(insns: tuple[Insn, ...], nr: int, arch: int) -> bool:
    # A transcription of seccomp_is_const_allow() (kernel/seccomp.c, Linux 5.11+): only nr and arch are
    # known, the accumulator starts at 0, and anything outside this short list gives up.
    a = 0
    pc = 0
    while pc < len(insns):
        code, jt, jf, k = insns[pc]
        if code == LD | W | ABS:
            if k == 0:
                a = nr & _U32
            elif k == 4:
                a = arch & _U32
            else:
                return False  # args or instruction_pointer: not known in advance
        elif code == RET | K:
            return k == RET_ALLOW
        elif code == JMP | JA:
            pc += k
        elif code in (JMP | JEQ | K, JMP | JGE | K, JMP | JGT | K, JMP | JSET | K):
            op = code & 0xF0
            taken = a == k if op == JEQ else a >= k if op == JGE else a > k if op == JGT else bool(a & k)
            pc += jt if taken else jf
        elif code == ALU | AND | K:
            a &= k
        else:
            return False
        pc += 1
    return False  # unreachable for a checked program: the last instruction is a ret


def action_cache(prog: bytes, arch: int, nrs: Iterable[int], *, exempt: Iterable[int] = ()) -> frozenset[int]:
    """The syscall numbers among `nrs` that the kernel's action cache marks "always allowed" for `arch`.

    Since Linux 5.11, attaching a filter emulates it once per syscall number with only `nr` and
    `arch` known (seccomp_cache_prepare_bitmap()); a number whose path reaches `ret ALLOW` without
    reading args or the instruction pointer is then allowed at syscall entry without running any
    BPF. The kernel builds this cache only for the native and compat arch and only for numbers
    below that arch's syscall count: the caller chooses `arch` and `nrs` to match.

    `exempt`: numbers the kernel treats as constant-allow before looking at the filter; newer
    kernels do this for the x86_64 uretprobe (335) and uprobe (336) syscalls on the native arch.
    """
    insns = check(prog)
    allowed = frozenset(exempt)
    return frozenset(nr for nr in nrs if nr in allowed or _const_allow(insns, nr, arch))


def describe_action(value: int) -> str:
    """A filter return value as a seccomp action: `ALLOW`, `ERRNO(1)`, `TRAP(0)`, `KILL_PROCESS`."""
    action, data = value & _ACTION_MASK, value & 0xFFFF
    name = ACTIONS.get(action)
    if name is None:
        # seccomp's __seccomp_filter() handles an unknown action like KILL_PROCESS.
        return f"{value:#010x} (unknown action: acts as KILL_PROCESS)"
    if action in _DATA_ACTIONS:
        return f"{name}({data})"
    return name if data == 0 else f"{name}({data:#x})"


_AUDIT_ARCHES = {
    0xC000003E: "AUDIT_ARCH_X86_64",
    0x40000003: "AUDIT_ARCH_I386",
    0xC00000B7: "AUDIT_ARCH_AARCH64",
    0x40000028: "AUDIT_ARCH_ARM",
    0xC00000F3: "AUDIT_ARCH_RISCV64",
    0x80000016: "AUDIT_ARCH_S390X",
    0xC0000015: "AUDIT_ARCH_PPC64LE",
}


def _field(k: int) -> str:
    if k == 0:
        return "nr"
    if k == 4:
        return "arch"
    half = "lo" if k % 8 == 0 else "hi"
    if k in (8, 12):
        return f"ip.{half}"
    if 16 <= k < SECCOMP_DATA_SIZE:
        return f"args[{(k - 16) // 8}].{half}"
    return "beyond seccomp_data"


def disassemble(prog: bytes, syscall_names: Mapping[int, str] | None = None) -> str:
    """One line per instruction, e.g. `0003: jeq #0x101 jt 4 jf 9  ; openat`.

    Jump targets are absolute instruction indices. Comparisons of a value just loaded from `nr` are
    annotated with the syscall name when `syscall_names` maps it (`; > recvfrom` for jgt), and
    those of `arch` with the AUDIT_ARCH name. Works on programs the kernel would refuse; only the
    length must be whole.
    """
    insns = decode(prog)
    loaded = _loaded_fields(insns)
    lines = []
    for pc, (code, jt, jf, k) in enumerate(insns):
        text, note = _render(pc, code, jt, jf, k, loaded[pc], syscall_names or {})
        lines.append(f"{pc:04d}: {text}" + (f"  ; {note}" if note else ""))
    return "\n".join(lines) + "\n"


def _loaded_fields(insns: tuple[Insn, ...]) -> list[str | None]:
    # Which seccomp_data field the accumulator holds when each instruction starts (None: a computed
    # or merged value). Jumps only go forward, so one pass over predecessors in order is exact.
    incoming: list[set[str | None]] = [set() for _ in insns]
    if insns:
        incoming[0].add(None)
    state: list[str | None] = []
    for pc, (code, jt, jf, k) in enumerate(insns):
        here = next(iter(incoming[pc])) if len(incoming[pc]) == 1 else None
        state.append(here)
        cls = code & 0x07
        after = here
        if code == LD | W | ABS:
            after = _field(k)
        elif cls in (LD, ALU) or code == MISC | TXA:
            after = None
        if cls == RET:
            continue
        if code == JMP | JA:
            targets = [pc + 1 + k]
        elif code in _COND_JUMPS or (cls == JMP and code not in _ALLOWED):
            targets = [pc + 1 + jt, pc + 1 + jf]
        else:
            targets = [pc + 1]
        for t in targets:
            if t < len(insns):
                incoming[t].add(after)
    return state


def _render(
    pc: int, code: int, jt: int, jf: int, k: int, held: str | None, names: Mapping[int, str]
) -> tuple[str, str]:
    name = _ALLOWED.get(code)
    if name is None:
        return f".insn code={code:#06x} jt={jt} jf={jf} k={k:#x}", "not allowed in a seccomp filter"
    cls, mode = code & 0x07, code & 0xE0
    if code == LD | W | ABS:
        return f"ld [{k}]", _field(k)
    if cls in (LD, LDX):
        if mode == LEN:
            return f"{name} #len", f"sizeof(struct seccomp_data) = {SECCOMP_DATA_SIZE}"
        if mode == MEM:
            return f"{name} M[{k}]", ""
        return f"{name} #{k:#x}", ""
    if cls in (ST, STX):
        return f"{name} M[{k}]", ""
    if cls == ALU:
        if code == ALU | NEG:
            return "neg", ""
        return (f"{name} x" if code & X else f"{name} #{k:#x}"), ""
    if code == JMP | JA:
        return f"ja {pc + 1 + k}", ""
    if cls == JMP:
        operand = "x" if code & X else f"#{k:#x}"
        note = ""
        if not code & X and code & 0xF0 != JSET:
            relation = {JEQ: "", JGT: "> ", JGE: ">= "}[code & 0xF0]
            if held == "nr" and k in names:
                note = relation + names[k]
            elif held == "arch" and k in _AUDIT_ARCHES:
                note = relation + _AUDIT_ARCHES[k]
        return f"{name} {operand} jt {pc + 1 + jt} jf {pc + 1 + jf}", note
    if cls == RET:
        return ("ret a", "") if code & RET_A else (f"ret {describe_action(k)}", "")
    return name, ""
