"""The validated, frozen, kernel-agnostic Policy a manifest (and what it extends) amounts to."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Span


@dataclass(frozen=True)
class Grant:
    """One granted capability with its parameters (plain, canonical), why, and where."""

    capability: str
    params: dict
    why: str | None
    at: Span


@dataclass(frozen=True)
class Preopen:
    """A granted path and its access modes (read / write / exec)."""

    path: str
    access: frozenset[str]
    why: str | None
    at: Span


@dataclass(frozen=True)
class Limits:
    memory: int | None = None
    swap: int | None = None
    pids: int | None = None
    cpu: float | None = None
    wall_time: float | None = None
    open_files: int | None = None
    core: int | None = None
    stack: int | None = None
    address_space: int | None = None
    at: dict[str, Span] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    """Everything a manifest grants, merged over what it extends."""

    name: str
    description: str
    grants: dict[str, Grant]
    preopens: tuple[Preopen, ...]
    limits: Limits
    on_violation: str
    compat: dict[str, str]
    network: str | None
    network_at: Span | None
    sources: tuple[str, ...]  # every file read, the manifest first
    # Every name the loader opened, the manifest first: (path as opened, sha256 of the bytes read, the real
    # directory its relative `extends:` resolved from). A compiled plan holds while all three still hold.
    inputs: tuple[tuple[str, str, str], ...] = ()

    def has(self, capability: str) -> bool:
        return capability in self.grants

    def ports(self, kind: str) -> list[int]:
        grant = self.grants.get("wasi:sockets/tcp")
        return sorted(grant.params.get(kind, [])) if grant else []
