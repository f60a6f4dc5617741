"""Policy limits → the cgroup section of the plan: v2 files, and their v1 spellings (pure)."""

from __future__ import annotations

from ...model.policy import Limits

CPU_PERIOD_US = 100_000


def compile_cgroups(limits: Limits) -> dict:
    """Files to write for memory, pids and cpu limits; {} when no cgroup is needed."""
    v2: dict[str, str] = {}
    v1: dict[str, dict[str, str]] = {}
    out: dict = {}
    if limits.memory is not None:
        swap = limits.swap or 0
        out.update(memory_max=limits.memory, swap_max=swap)
        v2.update({"memory.max": str(limits.memory), "memory.swap.max": str(swap), "memory.oom.group": "1"})
        # v1: limit_in_bytes first (memsw may never be below it); memsw is written only where present
        v1["memory"] = {"memory.limit_in_bytes": str(limits.memory),
                        "memory.memsw.limit_in_bytes": str(limits.memory + swap)}
    if limits.pids is not None:
        out["pids_max"] = limits.pids
        v2["pids.max"] = str(limits.pids)
        v1["pids"] = {"pids.max": str(limits.pids)}
    if limits.cpu is not None:
        quota = max(1000, round(limits.cpu * CPU_PERIOD_US))
        out["cpu"] = {"quota_us": quota, "period_us": CPU_PERIOD_US}
        v2["cpu.max"] = f"{quota} {CPU_PERIOD_US}"
        v1["cpu"] = {"cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(quota)}
    if not out:
        return {}
    out["v2"] = v2
    out["v1"] = v1
    out["at"] = {k: str(limits.at[k]) for k in ("memory", "pids", "cpu") if k in limits.at}
    return out
