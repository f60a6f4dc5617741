"""Plan → Kubernetes files: Pod or Deployment patch, NetworkPolicy, Localhost seccomp JSON, SPO SeccompProfile. Pure.

Kubernetes carries the seccomp part of a plan exactly (a Localhost profile in the OCI format), the
limits approximately (resources.limits; pids only per node), and the network part coarsely (a
NetworkPolicy filters traffic leaving the pod by port). Landlock, rlimits, scopes, audit and the
per-process deadline have no Kubernetes field: `export_k8s(..., entrypoint=True)` ships the plan in
a ConfigMap and makes `sandboxer run` the container's entrypoint, which enforces them inside.
Every YAML file opens with a comment saying what it is, how to apply it and what it cannot express.
"""

from __future__ import annotations

import base64
import re

import yaml

from ..plan import dumps
from .bundle import BPF_FILE, PLAN_FILE, render_bundle
from .oci import export_oci

KUBELET_SECCOMP_ROOT = "/var/lib/kubelet/seccomp"
PROFILE_SUBDIR = "sandboxer"  # our profiles live in <kubelet seccomp root>/sandboxer/
PLAN_MOUNT = "/etc/sandboxer/plan"  # where the ConfigMap with the compiled plan is mounted
PLAN_VOLUME = "sandboxer-plan"
LABEL = "sandboxer/policy"  # own label key: never collides with a Deployment's selector
SPO_API = "security-profiles-operator.x-k8s.io/v1beta1"

_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SOCKETS = ("wasi:sockets/tcp", "wasi:sockets/udp", "wasi:sockets/ip-name-lookup")


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings (the plan JSON) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _yaml(obj: dict) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100,
                     allow_unicode=True)


def memory_quantity(n: int) -> str:
    """Bytes as a Kubernetes quantity: the largest binary suffix that divides exactly (268435456 → 256Mi)."""
    for suffix, factor in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


def cpu_quantity(quota_us: int, period_us: int) -> str:
    """A cgroup cpu.max quota as Kubernetes CPU: whole cores as "2", fractions in millicores ("500m")."""
    milli = max(1, round(quota_us * 1000 / period_us))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def writable_paths(plan: dict) -> list[str]:
    """Preopened paths with write access, except /dev (device nodes come from the runtime, not a volume)."""
    return [p["path"] for p in plan["landlock"].get("paths", ())
            if "write_file" in p["access"] and p["path"] != "/dev" and not p["path"].startswith("/dev/")]


def volume_name(path: str, taken: set[str]) -> str:
    """A DNS-1123 label for a path's emptyDir volume ("/srv/out" → "srv-out"), unique among `taken`."""
    base = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")[:50].strip("-") or "root"
    name, n = base, 2
    while name in taken or name == PLAN_VOLUME:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def _grant(plan: dict, capability: str) -> dict | None:
    for g in plan["grants"]:
        if g["capability"] == capability:
            return g
    return None


def _ports(plan: dict, key: str) -> list[int]:
    tcp = _grant(plan, "wasi:sockets/tcp")
    return sorted(set(tcp["params"].get(key) or ())) if tcp else []


def plan_for_pod(plan: dict) -> dict:
    """The plan `sandboxer run` enforces inside a container: the kubelet already owns cgroups and netns.

    An unprivileged container cannot create a cgroup leaf (the kubelet's resources.limits and
    podPidsLimit set them) nor a network namespace (the pod has its own, filtered by the
    NetworkPolicy); both are recorded as degradations so `explain` and audit records show it.
    """
    out = dict(plan)
    added = []
    if plan.get("cgroups"):
        out["cgroups"] = {}
        added.append({"mechanism": "cgroups", "capability": None, "severity": "note", "at": None,
                      "what": "limits are set by Kubernetes (resources.limits; pids by the kubelet's podPidsLimit)",
                      "needs": "a writable cgroup", "targeted": "a Kubernetes container"})
    if plan["netns"]["mode"] != "host":
        out["netns"] = {"mode": "host"}
        added.append({"mechanism": "netns", "capability": None, "severity": "note", "at": None,
                      "what": f"netns {plan['netns']['mode']!r}: the pod's own network namespace is used, "
                              "closed by the NetworkPolicy (loopback inside the pod stays usable)",
                      "needs": "CAP_SYS_ADMIN or user namespaces", "targeted": "a Kubernetes container"})
    out["degradations"] = list(plan.get("degradations", ())) + added
    return out


# ---------------------------------------------------------------- headers


def _access_word(access: list[str]) -> str:
    words = [w for w, rights in (("read", ("read_file", "read_dir")), ("write", ("write_file",)),
                                 ("exec", ("execute",))) if any(r in access for r in rights)]
    return "+".join(words) or "no access"


def cannot_express(plan: dict, entrypoint: bool) -> list[str]:
    """Comment lines: what of this plan no Kubernetes field carries."""
    lines = ["WHAT KUBERNETES CANNOT EXPRESS (no Pod field exists for these):"]
    paths = plan["landlock"].get("paths", ())
    if paths:
        lines.append("  - Landlock path rules: the workload may touch only these paths (readOnlyRootFilesystem")
        lines.append("    and emptyDir stop writes elsewhere, but not reads or exec anywhere in the image):")
        lines += [f"      {p['path']}: {_access_word(p['access'])}" for p in paths]
    connect, bind = _ports(plan, "connect"), _ports(plan, "bind")
    if plan["landlock"].get("handled_net"):
        allowed = []
        if connect:
            allowed.append("connect " + ", ".join(map(str, connect)))
        if bind:
            allowed.append("bind " + ", ".join(map(str, bind)))
        lines.append(f"  - TCP port rules inside the container ({'; '.join(allowed) or 'no port may be used'}):")
        lines.append("    the NetworkPolicy filters traffic leaving the pod, not connects to localhost or to")
        lines.append("    other containers of the pod, and only where the CNI plugin enforces NetworkPolicy.")
    if plan["landlock"].get("scoped"):
        scopes = ", ".join(s.replace("_", " ") for s in plan["landlock"]["scoped"])
        lines.append(f"  - Landlock scopes ({scopes}): no connecting to abstract unix sockets")
        lines.append("    or signalling processes outside the sandbox.")
    if plan["netns"]["mode"] != "host":
        lines.append(f"  - a private network namespace (netns {plan['netns']['mode']}): networkpolicy.yaml denies")
        lines.append("    all traffic in and out of the pod, but the pod's loopback stays usable.")
    if plan.get("on_violation") == "log":
        lines.append("  - complain mode (on-violation: log): the profile uses SCMP_ACT_LOG, so violations reach")
        lines.append("    the node's kernel audit log only; Landlock has no complain mode at all.")
    lines.append("  - audit records: a denied call fails with EPERM and nothing names the capability to grant.")
    if plan.get("wall_time_s"):
        lines.append(f"  - wall-time {plan['wall_time_s']:g}s for the process (pod.yaml sets activeDeadlineSeconds,")
        lines.append("    which counts from pod start, image pull included; a Deployment has no deadline).")
    rl = plan.get("rlimits") or {}
    if rl:
        lines.append("  - rlimits: " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(rl.items())) + ".")
    env = plan.get("environment") or {}
    if env.get("pass"):
        lines.append(f"  - the environment allow-list ({', '.join(env['pass'])} only): the container")
        lines.append("    gets whatever the image and the kubelet set.")
    if entrypoint:
        but = " except the private network namespace" if plan["netns"]["mode"] != "host" else ""
        lines.append(f"All of these{but} ARE enforced here:")
        lines.append("`sandboxer run` is the container's entrypoint and applies the plan from configmap.yaml")
        lines.append(f"(mounted at {PLAN_MOUNT}) inside the container.")
    else:
        lines.append("To carry them, regenerate with `sandboxer k8s --entrypoint ... -- COMMAND`: the image then")
        lines.append("needs sandboxer installed, and `sandboxer run` enforces the whole plan inside the container.")
    return lines


def _steps(name: str, namespace: str, entrypoint: bool, patch: bool) -> list[str]:
    ns = f"-n {namespace} "
    install = f"install -D -m 0644 seccomp/{name}.json {KUBELET_SECCOMP_ROOT}/{PROFILE_SUBDIR}/{name}.json"
    steps = ["HOW TO APPLY (from the directory holding these files):"]
    if entrypoint:
        steps += ["  1. nothing on the nodes: `sandboxer run` installs these seccomp rules itself, and the pod",
                  "     uses RuntimeDefault, because the launcher needs calls the workload does not (fork,",
                  "     Landlock setup). To confine other pods with the same rules, copy the profile to every node:",
                  f"       {install}"]
    else:
        steps += ["  1. on EVERY node that may run the pod, as root (the kubelet reads Localhost profiles there):",
                  f"       {install}",
                  "     or, with the Security Profiles Operator: kubectl apply -f seccompprofile.yaml, then set",
                  "     localhostProfile to the path the operator reports:",
                  f"       kubectl {ns}get sp {name} -o jsonpath='{{.status.localhostProfile}}'"]
    steps.append(f"  2. kubectl {ns}apply -f networkpolicy.yaml")
    n = 3
    if entrypoint:
        steps.append(f"  {n}. kubectl {ns}apply -f configmap.yaml   (the image must have `sandboxer` on its PATH)")
        n += 1
    if patch:
        steps.append(f"  {n}. kubectl {ns}patch deployment DEPLOYMENT --patch-file deployment-patch.yaml")
        steps.append(f"     (the patch changes the container named {name!r}: rename it to match yours)")
    else:
        steps.append(f"  {n}. kubectl {ns}apply -f pod.yaml")
    return steps


def _header(title: list[str], plan: dict, name: str, namespace: str, entrypoint: bool, patch: bool) -> str:
    lines = [*title, "", f"Policy {plan['name']!r}: {plan.get('description') or ''}".rstrip(),
             f"Compiled for {plan['target']['arch']}, Landlock ABI {plan['target']['landlock_abi']}."
             " Generated by `sandboxer k8s`: regenerate rather than edit.", "",
             *_steps(name, namespace, entrypoint, patch), "", *cannot_express(plan, entrypoint)]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines) + "\n"


# ---------------------------------------------------------------- objects


def _meta(name: str, namespace: str, policy: str) -> dict:
    return {"name": name, "namespace": namespace, "labels": {LABEL: policy}}


def _container(plan: dict, name: str, image: str | None, command: list[str] | None,
               entrypoint: bool, volumes: list[tuple[str, str]]) -> dict:
    c: dict = {"name": name}
    if image:
        c["image"] = image
    if entrypoint:
        c["command"] = ["sandboxer", "run", PLAN_MOUNT, "--", *command]
    elif command:
        c["command"] = list(command)
    env = (plan.get("environment") or {}).get("set") or {}
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    c["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "privileged": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True}
    limits = {}
    cg = plan.get("cgroups") or {}
    if cg.get("memory_max") is not None:
        limits["memory"] = memory_quantity(cg["memory_max"])
    if cg.get("cpu"):
        limits["cpu"] = cpu_quantity(cg["cpu"]["quota_us"], cg["cpu"]["period_us"])
    if limits:
        c["resources"] = {"limits": limits}
    mounts = [{"name": vol, "mountPath": path} for vol, path in volumes]
    if entrypoint:
        mounts.append({"name": PLAN_VOLUME, "mountPath": PLAN_MOUNT, "readOnly": True})
    if mounts:
        c["volumeMounts"] = mounts
    return c


def _pod_spec(plan: dict, name: str, image: str | None, command: list[str] | None,
              entrypoint: bool, patch: bool) -> dict:
    taken: set[str] = set()
    volumes = [(volume_name(p, taken), p) for p in writable_paths(plan)]
    spec: dict = {}
    if not patch:
        spec["restartPolicy"] = "Never"
        if plan.get("wall_time_s"):
            spec["activeDeadlineSeconds"] = max(1, int(-(-plan["wall_time_s"] // 1)))
        spec["automountServiceAccountToken"] = False
    # With the entrypoint, the profile that applies to the container also confines `sandboxer run`
    # itself (a Python launcher that forks, reads its plan and sets up Landlock): the runtime's
    # default profile guards that phase and the launcher installs the exact filter before exec.
    profile = ({"type": "RuntimeDefault"} if entrypoint else
               {"type": "Localhost", "localhostProfile": f"{PROFILE_SUBDIR}/{name}.json"})
    spec["securityContext"] = {"seccompProfile": profile}
    spec["containers"] = [_container(plan, name, image, command, entrypoint, volumes)]
    vols = [{"name": vol, "emptyDir": {}} for vol, _ in volumes]
    if entrypoint:
        vols.append({"name": PLAN_VOLUME, "configMap": {"name": f"{name}-{PLAN_VOLUME}"}})
    if vols:
        spec["volumes"] = vols
    return spec


def _with_resources_note(text: str, plan: dict) -> str:
    """A comment above the container's `resources:` (or its securityContext) on pids, which has no field."""
    pids = (plan.get("cgroups") or {}).get("pids_max")
    if pids is None:
        return text
    lines = text.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.lstrip(" ").startswith("resources:")]
    at = at or [i for i, line in enumerate(lines) if line.lstrip(" ").startswith("securityContext:")][-1:]
    i = at[0]
    indent = " " * (len(lines[i]) - len(lines[i].lstrip(" ")))
    note = [f"{indent}# pids.max {pids} has no container field: Kubernetes limits pids per pod, node-wide,\n",
            f"{indent}# through the kubelet's podPidsLimit (KubeletConfiguration).\n"]
    return "".join(lines[:i] + note + lines[i:])


def _network_policy(plan: dict, name: str, namespace: str) -> dict:
    spec: dict = {"podSelector": {"matchLabels": {LABEL: name}}, "policyTypes": ["Ingress", "Egress"]}
    if plan["netns"]["mode"] == "host":
        egress_ports = [{"protocol": "TCP", "port": p} for p in _ports(plan, "connect")]
        if _grant(plan, "wasi:sockets/ip-name-lookup"):
            egress_ports += [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
        if _grant(plan, "wasi:sockets/udp"):
            egress_ports.append({"protocol": "UDP"})  # no port: every UDP port (Landlock cannot filter UDP)
        ingress_ports = [{"protocol": "TCP", "port": p} for p in _ports(plan, "bind")]
        if ingress_ports:
            spec["ingress"] = [{"ports": ingress_ports}]
        if egress_ports:
            spec["egress"] = [{"ports": _dedupe(egress_ports)}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(name, namespace, name), "spec": spec}


def _dedupe(ports: list[dict]) -> list[dict]:
    seen, out = set(), []
    for p in ports:
        key = (p["protocol"], p.get("port"))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _network_summary(plan: dict) -> list[str]:
    if plan["netns"]["mode"] != "host" or not any(_grant(plan, c) for c in _SOCKETS):
        return ["No socket capability is granted: all ingress and all egress of the pod are denied."]
    out = []
    connect, bind = _ports(plan, "connect"), _ports(plan, "bind")
    if connect:
        out.append(f"Egress: TCP to port(s) {', '.join(map(str, connect))} (wasi:sockets/tcp connect).")
    if _grant(plan, "wasi:sockets/ip-name-lookup"):
        out.append("Egress: DNS on UDP and TCP port 53 (wasi:sockets/ip-name-lookup).")
    if _grant(plan, "wasi:sockets/udp"):
        out.append("Egress: UDP to ANY port: wasi:sockets/udp does not restrict ports (Landlock has no UDP")
        out.append("rules), so neither does this policy. Incoming UDP is not opened.")
    if bind:
        out.append(f"Ingress: TCP to port(s) {', '.join(map(str, bind))} (wasi:sockets/tcp bind).")
    if not bind:
        out.append("Ingress: none.")
    if not (connect or _grant(plan, "wasi:sockets/ip-name-lookup") or _grant(plan, "wasi:sockets/udp")):
        out.append("Egress: none.")
    out.append("Peers are not restricted (no `to`/`from`): add namespaceSelector/podSelector/ipBlock as needed.")
    return out


def _spo_profile(oci: dict, name: str, namespace: str, policy: str) -> dict:
    """The same rules as a Security Profiles Operator SeccompProfile (its spec has no comments, no defaultErrnoRet)."""
    spec: dict = {"defaultAction": oci["defaultAction"], "architectures": list(oci["architectures"])}
    syscalls = []
    for entry in oci["syscalls"]:
        e: dict = {"names": list(entry["names"]), "action": entry["action"]}
        if "errnoRet" in entry:
            e["errnoRet"] = entry["errnoRet"]
        if entry.get("args"):
            e["args"] = [dict(a) for a in entry["args"]]
        syscalls.append(e)
    spec["syscalls"] = syscalls
    return {"apiVersion": SPO_API, "kind": "SeccompProfile", "metadata": _meta(name, namespace, policy),
            "spec": spec}


def export_k8s(plan: dict, *, name: str | None = None, namespace: str = "default", image: str | None = None,
               entrypoint: bool = False, patch: bool = False, command: list[str] | None = None,
               manifest_text: str | None = None) -> dict[str, str]:
    """File name → text: seccomp/<name>.json, pod.yaml or deployment-patch.yaml, networkpolicy.yaml,
    seccompprofile.yaml, and with `entrypoint` configmap.yaml. Raises ValueError on unusable input."""
    name = name or plan["name"]
    for what, value in (("name", name), ("namespace", namespace)):
        if not _DNS_NAME.match(value) or len(value) > 63:
            raise ValueError(f"{what} {value!r} is not a DNS-1123 label (lower-case letters, digits and '-', "
                             f"at most 63 characters): choose one with --{what}")
    if entrypoint and not command:
        raise ValueError("--entrypoint wraps the container's command: give it after `--` "
                         f"(sandboxer run {PLAN_MOUNT} -- COMMAND)")
    if not patch and not image:
        raise ValueError("a Pod needs --image (or use --patch to change an existing Deployment)")
    oci = export_oci(plan["seccomp"])
    if oci.get("defaultErrnoRet", 1) != 1:  # SPO and older runtimes return EPERM for a bare SCMP_ACT_ERRNO
        raise ValueError(f"default errno {oci['defaultErrnoRet']} cannot be expressed in a SeccompProfile")
    files: dict[str, str] = {f"seccomp/{name}.json": dumps(oci)}

    def header(*title: str) -> str:
        return _header(list(title), plan, name, namespace, entrypoint, patch)

    pod_spec = _pod_spec(plan, name, image, command, entrypoint, patch)
    limit_lines = _limit_lines(plan)
    if patch:
        body = {"spec": {"template": {"metadata": {"labels": {LABEL: name}}, "spec": pod_spec}}}
        files["deployment-patch.yaml"] = header(
            "deployment-patch.yaml: a strategic-merge patch that confines an existing Deployment's pods:",
            "the seccomp profile, a locked-down securityContext, resource limits, an emptyDir for every",
            f"writable path, and the label {LABEL}={name} the NetworkPolicy selects.",
            *limit_lines) + _with_resources_note(_yaml(body), plan)
    else:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(name, namespace, name),
                "spec": pod_spec}
        files["pod.yaml"] = header(
            "pod.yaml: the Pod, confined by the seccomp profile, a locked-down securityContext, resource",
            "limits and an emptyDir for every writable path (the root file system is read-only; an emptyDir",
            "hides what the image has at that path: use a PersistentVolumeClaim for data that must persist).",
            *limit_lines) + _with_resources_note(_yaml(body), plan)
    files["networkpolicy.yaml"] = header(
        f"networkpolicy.yaml: the NetworkPolicy for pods labelled {LABEL}={name},",
        "from the plan's wasi:sockets/* grants. It is enforced only where the cluster's CNI plugin",
        "supports NetworkPolicy.",
        *_network_summary(plan)) + _yaml(_network_policy(plan, name, namespace))
    files["seccompprofile.yaml"] = header(
        f"seccompprofile.yaml: the same seccomp rules as seccomp/{name}.json, as a Security Profiles",
        f"Operator SeccompProfile ({SPO_API}):",
        "the operator writes it to every node, so no node copy is needed. Unlike the JSON it carries no",
        "comments, and its default errno is the runtime's EPERM (the CRD has neither field).") + _yaml(
        _spo_profile(oci, name, namespace, name))
    if entrypoint:
        bundle = render_bundle(plan_for_pod(plan))
        data = {PLAN_FILE: bundle[PLAN_FILE].decode()}
        if manifest_text is not None:
            data["manifest.yaml"] = manifest_text
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": _meta(f"{name}-{PLAN_VOLUME}", namespace, name),
              "data": data, "binaryData": {BPF_FILE: base64.b64encode(bundle[BPF_FILE]).decode()}}
        files["configmap.yaml"] = header(
            f"configmap.yaml: the compiled plan, mounted at {PLAN_MOUNT} as a directory `sandboxer run`",
            f"reads ({PLAN_FILE} + {BPF_FILE}; the same files `sandboxer compile -o DIR` writes).",
            "Inside a container the kubelet owns cgroups and the network namespace, so this copy of the",
            "plan leaves them to Kubernetes (recorded under degradations); everything else is enforced.") + _yaml(cm)
    return files


def _limit_lines(plan: dict) -> list[str]:
    cg = plan.get("cgroups") or {}
    parts = []
    if cg.get("memory_max") is not None:
        parts.append(f"memory {memory_quantity(cg['memory_max'])}")
        if cg.get("swap_max"):
            parts.append(f"swap {memory_quantity(cg['swap_max'])} (Kubernetes: node swap settings decide)")
    if cg.get("cpu"):
        parts.append(f"cpu {cpu_quantity(cg['cpu']['quota_us'], cg['cpu']['period_us'])}")
    if cg.get("pids_max") is not None:
        parts.append(f"pids {cg['pids_max']} (only per pod, node-wide: kubelet podPidsLimit)")
    return [f"Limits: {', '.join(parts)}."] if parts else []
