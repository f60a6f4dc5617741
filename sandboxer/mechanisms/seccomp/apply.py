"""Apply stage: install a compiled seccomp BPF program; the parent prepares it, the child only makes the syscall."""

from __future__ import annotations

from sandboxer.launch import libc

from sandboxer.launch import kernel

# include/uapi/linux/bpf_common.h: BPF_MAXINSNS. The kernel rejects longer classic programs.
MAX_INSNS = 4096
INSN_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k

SECCOMP_FILTER_FLAG_NEW_LISTENER = kernel.SECCOMP_FILTER_FLAG_NEW_LISTENER


class SeccompProgramError(ValueError):
    """The BPF program cannot be a seccomp filter (found in the parent, before fork)."""


class PreparedFilter:
    """A program copied into C memory with its struct sock_fprog, ready for seccomp(2).

    The object owns the buffer: keep it alive until the filter is loaded (the kernel copies it then).
    """

    def __init__(self, prog: bytes, flags: int, buffer: libc.Array, fprog: kernel.SockFprog) -> None:
        self.prog = prog
        self.flags = flags
        self.buffer = buffer
        self.fprog = fprog

    @property
    def instructions(self) -> int:
        return len(self.prog) // INSN_SIZE

    def install(self) -> int:
        """seccomp(SECCOMP_SET_MODE_FILTER): the listener fd with FLAG_NEW_LISTENER, else 0.

        Needs no_new_privs (or CAP_SYS_ADMIN); raises OSError(errno, strerror, call).
        """
        return kernel.seccomp_set_mode_filter(self.flags, self.fprog)


def prepare_filter(prog: bytes, flags: int = 0) -> PreparedFilter:
    """Check the size of `prog` (raw struct sock_filter[]), copy it into C memory and build its sock_fprog."""
    if kernel.NR_SECCOMP < 0:
        raise SeccompProgramError(f"seccomp filters are not supported on {kernel.ARCH} by sandboxer")
    if not prog or len(prog) % INSN_SIZE:
        raise SeccompProgramError(
            f"the seccomp program is {len(prog)} bytes, not a non-empty multiple of {INSN_SIZE}"
        )
    n = len(prog) // INSN_SIZE
    if n > MAX_INSNS:
        raise SeccompProgramError(f"the seccomp program has {n} instructions; the kernel accepts {MAX_INSNS}")
    buffer = (kernel.SockFilter * n).from_buffer_copy(prog)
    fprog = kernel.SockFprog(n, libc.addressof(buffer))
    return PreparedFilter(bytes(prog), flags, buffer, fprog)


def load_filter(prog: bytes, flags: int = 0) -> int:
    """Prepare and install `prog` in the calling process: the seccomp(2) result (listener fd or 0)."""
    prepared = prepare_filter(prog, flags)
    return prepared.install()
