"""`sandboxer probe`: what this host can enforce (read-only; gathers each mechanism's own probe)."""

from __future__ import annotations

import os
import platform

from .mechanisms.cgroups.probe import probe_cgroups
from .mechanisms.landlock.probe import probe_landlock
from .mechanisms.landlock.rights import KERNEL_FOR_ABI, NEWEST_ABI
from .mechanisms.netns.probe import probe_netns
from .mechanisms.seccomp.probe import probe_seccomp


def probe_host() -> dict:
    ll = probe_landlock()
    cg = probe_cgroups()
    ns = probe_netns()
    return {
        "kernel": platform.release(),
        "arch": platform.machine(),
        "euid": os.geteuid(),
        "seccomp": probe_seccomp(),
        "landlock": {"abi": ll.abi, "newest_known": NEWEST_ABI, "reason": ll.reason, "errata": ll.errata},
        "cgroups": {
            "layout": cg.layout, "v2_dir": cg.v2_dir, "v2_writable": cg.v2_writable,
            "v2_controllers": sorted(cg.v2_available), "v2_enabled_below": sorted(cg.v2_enabled),
            "v1_dirs": dict(sorted(cg.v1_dirs.items())), "v1_memsw": cg.memsw,
        },
        "netns": {"available": ns.available, "via_userns": ns.via_userns, "reason": ns.reason},
    }


def render_probe(r: dict) -> str:
    sc, ll, cg, ns = r["seccomp"], r["landlock"], r["cgroups"], r["netns"]
    yes = lambda b: "yes" if b else "no"  # noqa: E731
    lines = [
        f"kernel        {r['kernel']} ({r['arch']}), running as uid {r['euid']}",
        f"seccomp       filters: {yes(sc['filter'])}; user notification: {yes(sc['user_notif'])}; "
        f"actions: {' '.join(sc['actions'])}",
        f"landlock      ABI {ll['abi']}" + (f" (Linux {KERNEL_FOR_ABI[ll['abi']]}+)" if ll["abi"] in KERNEL_FOR_ABI else "")
        + (f": {ll['reason']}" if ll["reason"] else "")
        + (f"; sandboxer knows up to ABI {ll['newest_known']}" if ll["abi"] != ll["newest_known"] else ""),
        f"cgroups       {cg['layout']}; v2 cgroup {cg['v2_dir'] or '-'} "
        f"(controllers: {' '.join(cg['v2_controllers']) or 'none'}, writable: {yes(cg['v2_writable'])})",
    ]
    for c, d in cg["v1_dirs"].items():
        lines.append(f"              v1 {c}: {d}")
    lines.append(f"netns         private network namespace: {yes(ns['available'])}"
                 + (" (through a user namespace)" if ns["via_userns"] else "")
                 + (f": {ns['reason']}" if ns["reason"] else ""))
    return "\n".join(lines)
