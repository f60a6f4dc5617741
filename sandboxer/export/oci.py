"""Seccomp section → OCI/Docker seccomp JSON (runc, crun, containerd, Kubernetes Localhost profiles). Pure.

The OCI format has libseccomp's semantics: an entry with `args` allows only when every condition
holds, and a call whose entries all miss gets `defaultAction`. So a plan rule "deny when X, else
allow" (ioctl TIOCSTI, send*(MSG_FASTOPEN)) is written as allow entries covering the complement of
X: for masked equality on the low 32 bits, the complement of a set of values is a set of bit
prefixes ("agrees above bit i, differs at bit i"), which single MASKED_EQ conditions express
exactly, high bits ignored as the kernel ignores them for `int` arguments.
"""

from __future__ import annotations

import errno as _errno

ARCH_NAMES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
OPS = {"eq": "SCMP_CMP_EQ", "ne": "SCMP_CMP_NE", "lt": "SCMP_CMP_LT", "le": "SCMP_CMP_LE",
       "gt": "SCMP_CMP_GT", "ge": "SCMP_CMP_GE", "masked_eq": "SCMP_CMP_MASKED_EQ"}


class NotExpressible(ValueError):
    """A plan rule the OCI format cannot say exactly."""


def _action(action: str, violation: str) -> dict:
    if action == "violation":
        action = violation
    if action == "allow":
        return {"action": "SCMP_ACT_ALLOW"}
    if action == "kill":
        return {"action": "SCMP_ACT_KILL_PROCESS"}
    if action in ("log", "notify"):
        return {"action": "SCMP_ACT_LOG"}
    if action.startswith("errno:"):
        return {"action": "SCMP_ACT_ERRNO", "errnoRet": getattr(_errno, action.removeprefix("errno:"))}
    raise NotExpressible(f"action {action!r}")


def _arg(cond: dict) -> dict:
    op = cond["op"]
    if op == "masked_eq":
        mask, value = cond["mask"], cond["value"]
    else:
        mask, value = cond["value"], 0
    if cond["width"] == 32 and op == "eq":  # compare the low word only, as the kernel does
        return {"index": cond["arg"], "value": 0xFFFFFFFF, "valueTwo": cond["value"], "op": OPS["masked_eq"]}
    if cond["width"] == 32 and op == "masked_eq":
        mask &= 0xFFFFFFFF
    return {"index": cond["arg"], "value": mask, "valueTwo": value, "op": OPS[op]}


def complement_prefixes(values: list[int], bits: int = 32) -> list[tuple[int, int]]:
    """(mask, value) pairs whose matches are exactly the `bits`-wide numbers not in `values`."""
    out: list[tuple[int, int]] = []
    full = (1 << bits) - 1

    def walk(bit: int, prefix: int, remaining: list[int]) -> None:
        if not remaining:
            mask = full & ~((1 << (bit + 1)) - 1) if bit >= 0 else full
            out.append((mask, prefix))
            return
        if bit < 0:
            return  # an excluded value itself
        one = 1 << bit
        walk(bit - 1, prefix, [v for v in remaining if not v & one])
        walk(bit - 1, prefix | one, [v for v in remaining if v & one])

    walk(bits - 1, 0, sorted(set(values)))
    return out


def export_oci(section: dict) -> dict:
    """The OCI `linux.seccomp` object for one architecture."""
    violation = section["violation"]
    default = _action("violation", violation)
    profile: dict = {"defaultAction": default["action"]}
    if "errnoRet" in default:
        profile["defaultErrnoRet"] = default["errnoRet"]
    profile["architectures"] = [ARCH_NAMES[section["arch"]]]
    plain: dict[tuple, list[str]] = {}
    entries: list[dict] = []
    for sc in section["syscalls"]:
        rules = sc.get("rules")
        if not rules:
            act = _action(sc["action"], violation)
            if act != default:
                plain.setdefault(tuple(sorted(act.items())), []).append(sc["name"])
            continue
        fallback = sc["action"]
        if all(r["action"] == "allow" for r in rules) and fallback == "violation":
            for r in rules:
                entries.append({"names": [sc["name"]], "action": "SCMP_ACT_ALLOW",
                                "args": [_arg(c) for c in r["when"]], "comment": r.get("why", "")})
        elif len({r["action"] for r in rules}) == 1 and rules[0]["action"] != "allow" and fallback == "allow":
            entries += _allow_except(sc["name"], rules)
            act = _action(rules[0]["action"], violation)
            if act != default:  # the excluded values would fall to defaultAction: say theirs explicitly
                entries += [{"names": [sc["name"]], **act, "args": [_arg(c) for c in r["when"]],
                             "comment": r.get("why", "")} for r in rules]
        elif (fallback.startswith("errno:") and rules[-1]["action"] == "violation" and default == _action(
                "violation", violation) and all(r["action"] == "allow" for r in rules[:-1])):
            # Complain mode's clone: allowed shapes, then "anything else without the masked bits" falls
            # to defaultAction (the violation action), and the rest gets the fallback's errno: entries
            # covering every value of the last rule's argument except its own.
            for r in rules[:-1]:
                entries.append({"names": [sc["name"]], "action": "SCMP_ACT_ALLOW",
                                "args": [_arg(c) for c in r["when"]], "comment": r.get("why", "")})
            entries += _allow_except(sc["name"], rules[-1:], _action(fallback, violation),
                                     comment=sc.get("why") or "refused whatever the violation action")
        else:
            raise NotExpressible(f"{sc['name']}: mixed rule actions")
    out = [{"names": sorted(names), **dict(act)} for act, names in sorted(plain.items())]
    profile["syscalls"] = out + entries
    return profile


def _allow_except(name: str, rules: list[dict], act: dict | None = None, comment: str | None = None) -> list[dict]:
    """Entries with action `act` (allow by default) covering every value of one 32-bit argument except the rules' ones."""
    act = act or {"action": "SCMP_ACT_ALLOW"}
    conds = [r["when"] for r in rules]
    if any(len(c) != 1 for c in conds) or len({c[0]["arg"] for c in conds}) != 1:
        raise NotExpressible(f"{name}: deny rules must test one argument")
    arg = conds[0][0]["arg"]
    masks = {c[0].get("mask", 0xFFFFFFFF) & 0xFFFFFFFF for c in conds}
    if len(masks) != 1 or any(c[0]["op"] not in ("eq", "masked_eq") or c[0]["width"] != 32 for c in conds):
        raise NotExpressible(f"{name}: deny rules must be 32-bit equality tests under one mask")
    (mask,) = masks
    bits = [i for i in range(32) if mask >> i & 1]
    denied = [_compress(c[0]["value"] & mask, bits) for c in conds]
    why = "; ".join(r.get("why", "") for r in rules)
    entries = []
    for pmask, pvalue in complement_prefixes(denied, len(bits)):
        m, v = _expand(pmask, bits), _expand(pvalue, bits)
        entry = {"names": [name], **act, "comment": comment or f"all but: {why}"}
        if m:
            entry["args"] = [{"index": arg, "value": m, "valueTwo": v, "op": "SCMP_CMP_MASKED_EQ"}]
        entries.append(entry)
    return entries


def _compress(value: int, bits: list[int]) -> int:
    return sum(((value >> b) & 1) << i for i, b in enumerate(bits))


def _expand(value: int, bits: list[int]) -> int:
    return sum(((value >> i) & 1) << b for i, b in enumerate(bits))
