"""`sandboxer explain`: each grant → what it opens in each mechanism → minimum kernel → enforced here."""

from __future__ import annotations

from .mechanisms.landlock.probe import probe_abi
from .mechanisms.landlock.rights import KERNEL_FOR_ABI
from .mechanisms.seccomp.probe import probe_seccomp
from .model import registry as reg

_NEEDS_ABI = {"wasi:filesystem/preopens": 1, "wasi:sockets/tcp": 4, "sandboxer:ipc/unix-sockets": 6,
              "wasi:sockets/ip-name-lookup": 4}


def list_capabilities() -> str:
    width = max(map(len, reg.CAPABILITIES))
    lines = ["capabilities (imports:)"]
    lines += [f"  {name:<{width}}  {cap.summary}" for name, cap in reg.CAPABILITIES.items()]
    lines.append("limits:  " + ", ".join(reg.LIMITS))
    lines.append("on-violation:  " + " | ".join(reg.ON_VIOLATION))
    return "\n".join(lines)


def explain_plan(plan: dict) -> str:
    """A readable table of the plan, checked against this host's kernel."""
    host_abi = probe_abi()
    seccomp_ok = probe_seccomp()["filter"]
    by_cap: dict[str, list[str]] = {}
    for sc in plan["seccomp"]["syscalls"]:
        if sc["action"] != "allow" and not sc.get("rules"):
            continue  # clone3 → ENOSYS, never-granted calls in complain mode
        for cap in sc["because"]:
            label = sc["name"] + ("*" if sc.get("rules") else "")
            by_cap.setdefault(cap, []).append(label)
    ll = plan["landlock"]
    out = [f"{plan['name']}: {plan['description']}".rstrip(": "),
           f"target {plan['target']['arch']}, Landlock ABI {plan['target']['landlock_abi']}; "
           f"this host: Landlock ABI {host_abi}, seccomp {'yes' if seccomp_ok else 'no'}; "
           f"on violation: {plan['on_violation']}", ""]
    rows = [("runtime (always)", by_cap.get("runtime", []), [], "3.17")]
    for g in plan["grants"]:
        cap = g["capability"]
        land = [f"{p['path']} {','.join(p['access'])}" for p in ll["paths"] if cap in p["because"]]
        land += [f"tcp {p['port']} {','.join(p['access'])}" for p in ll["ports"] if cap in p["because"]]
        abi = _NEEDS_ABI.get(cap)
        rows.append((cap + (f"  ({g['why']})" if g["why"] else ""), by_cap.get(cap, []), land,
                     f"{KERNEL_FOR_ABI[abi]} (Landlock ABI {abi})" if abi else "3.17"))
    for name, syscalls, land, kernel in rows:
        abi = _NEEDS_ABI.get(name.split()[0])
        here = "enforced here" if seccomp_ok and (abi is None or host_abi >= abi) else "NOT enforced here"
        out.append(f"{name}")
        if syscalls:
            out.append(f"    seccomp   {len(syscalls)} syscall{'s' if len(syscalls) != 1 else ''}: {_short(syscalls)}")
        if land:
            out.append(f"    landlock  {'; '.join(land)}")
        out.append(f"    kernel    {kernel}: {here}")
    if ll["scoped"]:
        out.append(f"scoped by Landlock: {', '.join(ll['scoped'])} (ABI 6, Linux 6.12)")
    out.append(f"network namespace: {plan['netns']['mode']}")
    if plan["cgroups"]:
        cg = plan["cgroups"]
        out.append("cgroup limits: " + ", ".join(f"{k} {v}" for k, v in cg["v2"].items()))
    for d in plan["degradations"]:
        out.append(f"degraded ({d['severity']}): {d['what']} — needs {d['needs']}")
    out.append("(* = arguments checked)")
    return "\n".join(out)


def _short(names: list[str], n: int = 12) -> str:
    shown = ", ".join(sorted(names)[:n])
    return shown + (f", … (+{len(names) - n})" if len(names) > n else "")
