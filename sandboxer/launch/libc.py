"""The slice of ctypes the launch path uses, defined on `_ctypes` (the C half of ctypes) directly.

`import ctypes` costs ~2.4 ms on every `sandboxer run` on these machines: ctypes/__init__.py
defines some forty types and imports struct and types, and it is paid before every workload
starts. The launch path needs a function-pointer type bound to libc, a handful of integer types,
structures and byte buffers. They are the same C types ctypes defines (same `_type_` codes, same
`_ctypes` machinery, same ABI), declared here once; modules off the launch path use ctypes itself.
"""

from __future__ import annotations

import _ctypes
from _ctypes import Array, Structure, addressof, byref, get_errno, sizeof

__all__ = [
    "Array", "Structure", "addressof", "byref", "get_errno", "sizeof", "function",
    "c_char", "c_char_p", "c_void_p", "c_short", "c_ushort", "c_int", "c_uint", "c_long", "c_ulong",
    "c_uint8", "c_uint16", "c_int32", "c_uint32", "c_uint64", "c_size_t", "buffer",
]


# The type codes are those of Modules/_ctypes/cfield.c, as ctypes/__init__.py declares them.
class c_char(_ctypes._SimpleCData):  # noqa: N801 - ctypes' names, so the code reads like ctypes
    _type_ = "c"


class c_char_p(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "z"


class c_void_p(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "P"


class c_short(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "h"


class c_ushort(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "H"


class c_int(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "I"


class c_long(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "L"


class c_uint8(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "B"


class c_uint64(_ctypes._SimpleCData):  # noqa: N801
    _type_ = "Q"


c_uint16, c_int32, c_uint32, c_size_t = c_ushort, c_int, c_uint, c_ulong  # LP64 (x86_64, aarch64)


class _Function(_ctypes.CFuncPtr):
    """A libc function that saves errno for get_errno(), as ctypes.CDLL(None, use_errno=True) makes them."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _Library:
    """What CFuncPtr((name, library)) reads: the dlopen(3) handle of the running program (libc included)."""

    _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)


_LIBC = _Library()


def function(name: str, restype: type, *argtypes: type) -> _Function:
    """The libc function `name` with its C signature fixed now (the child never looks anything up)."""
    f = _Function((name, _LIBC))
    f.restype = restype
    f.argtypes = argtypes
    return f


def buffer(size: int) -> _ctypes.Array:
    """A zeroed, writable char[size] (ctypes.create_string_buffer(size))."""
    return (c_char * size)()
