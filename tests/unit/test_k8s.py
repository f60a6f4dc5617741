"""The Kubernetes exporter: golden files, securityContext, volumes, NetworkPolicy, SPO profile, entrypoint, and schemas."""

from __future__ import annotations

import base64
import copy
import difflib
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sandboxer.cli import app
from sandboxer.export.bundle import read_bundle
from sandboxer.export.k8s import (
    cpu_quantity,
    export_k8s,
    memory_quantity,
    plan_for_pod,
    volume_name,
)
from sandboxer.export.oci import export_oci
from sandboxer.manifest.load import load_policy
from sandboxer.mechanisms.seccomp.bpf import assemble
from sandboxer.plan import Target, compile_plan, dumps

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "k8s"
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.yaml"))
IMAGE = "registry.example/{name}:1.0"
# The two variants pinned as golden files: a Pod for every example, and the entrypoint + Deployment
# patch for two (their ConfigMap embeds the whole plan, which tests/golden/<case>/plan.json pins).
ENTRYPOINT_GOLDEN = ("hello", "tcp-client")
COMMANDS = {"hello": ["/usr/bin/echo", "hello"], "tcp-client": ["/usr/bin/python3", "/app/client.py"]}
SECURITY_CONTEXT = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                    "privileged": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True}


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Manifests are loaded by relative path from the repo root, so spans stay checkout-independent."""
    monkeypatch.chdir(ROOT)


def plan_of(example: str) -> dict:
    return compile_plan(load_policy(f"examples/{example}.yaml"), Target("x86_64", 7))


def plan_from_text(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return compile_plan(load_policy(path), Target("x86_64", 7))


def default_files(example: str) -> dict[str, str]:
    return export_k8s(plan_of(example), image=IMAGE.format(name=example), namespace="sandboxed")


def entrypoint_files(example: str) -> dict[str, str]:
    return export_k8s(plan_of(example), namespace="sandboxed", entrypoint=True, patch=True,
                      command=COMMANDS.get(example, ["/app/run"]),
                      manifest_text=(ROOT / "examples" / f"{example}.yaml").read_text())


def pod(files: dict[str, str]) -> dict:
    return yaml.safe_load(files["pod.yaml"])


def netpol(files: dict[str, str]) -> dict:
    return yaml.safe_load(files["networkpolicy.yaml"])


# ---------------------------------------------------------------- golden files


def check_golden(directory: Path, files: dict[str, str], request: pytest.FixtureRequest) -> None:
    """Compare with the committed files; missing ones are written (and fail), --update-golden rewrites all."""
    update = bool(request.config.getoption("--update-golden", default=False))
    written, changed = [], []
    for rel, text in sorted(files.items()):
        path = directory / rel
        if update or not path.exists():
            if not path.exists():
                written.append(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        elif path.read_text() != text:
            diff = difflib.unified_diff(path.read_text().splitlines(), text.splitlines(), str(path), "now",
                                        lineterm="", n=1)
            changed.append("\n".join(list(diff)[:40]))
    stale = sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                   if p.is_file() and str(p.relative_to(directory)) not in files)
    if update:
        for rel in stale:
            (directory / rel).unlink()
        stale = []
    problems = []
    if written and not update:
        problems.append(f"wrote new golden files {written} in {directory}: review them, then commit")
    if changed:
        problems.append("output differs from the golden files (review, then run pytest --update-golden):\n"
                        + "\n".join(changed))
    if stale:
        problems.append(f"golden files no longer produced: {stale} (pytest --update-golden removes them)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("example", EXAMPLES)
def test_golden_pod_files(example: str, at_root: None, request: pytest.FixtureRequest) -> None:
    """Every example's Pod, NetworkPolicy, SeccompProfile and Localhost JSON equal the committed files."""
    check_golden(GOLDEN / example, default_files(example), request)


@pytest.mark.parametrize("example", ENTRYPOINT_GOLDEN)
def test_golden_entrypoint_patch_files(example: str, at_root: None, request: pytest.FixtureRequest) -> None:
    """The --entrypoint --patch variant (Deployment patch + ConfigMap) equals the committed files."""
    check_golden(GOLDEN / f"{example}-entrypoint-patch", entrypoint_files(example), request)


def test_no_stray_k8s_golden_directories() -> None:
    """Every directory under tests/golden/k8s/ belongs to an example (a removed one leaves no orphan)."""
    expected = set(EXAMPLES) | {f"{e}-entrypoint-patch" for e in ENTRYPOINT_GOLDEN}
    assert {p.name for p in GOLDEN.iterdir() if p.is_dir()} <= expected


def test_export_is_deterministic(at_root: None) -> None:
    """Two exports of the same plan are identical, file for file."""
    assert default_files("tcp-client") == default_files("tcp-client")
    assert entrypoint_files("c-build") == entrypoint_files("c-build")


# ---------------------------------------------------------------- the Pod


@pytest.mark.parametrize("example", EXAMPLES)
def test_pod_security_context(example: str, at_root: None) -> None:
    """Localhost profile sandboxer/<name>.json at pod level; the container is locked down."""
    spec = pod(default_files(example))["spec"]
    assert spec["securityContext"]["seccompProfile"] == {"type": "Localhost",
                                                          "localhostProfile": f"sandboxer/{example}.json"}
    (container,) = spec["containers"]
    assert container["securityContext"] == SECURITY_CONTEXT
    assert container["image"] == IMAGE.format(name=example)


@pytest.mark.parametrize("example", EXAMPLES)
def test_writable_paths_get_an_empty_dir(example: str, at_root: None) -> None:
    """An emptyDir is mounted at each preopen with write access (never under /dev), and nowhere else."""
    plan = plan_of(example)
    spec = pod(default_files(example))["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", ())}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0].get("volumeMounts", ())}
    writable = {p["path"] for p in plan["landlock"]["paths"]
                if "write_file" in p["access"] and not p["path"].startswith("/dev")}
    assert set(mounts) == writable
    assert all(volumes[name] == {"name": name, "emptyDir": {}} for name in mounts.values())


def test_empty_dirs_of_the_examples(at_root: None) -> None:
    """c-build writes /build and /tmp, data-processor /srv/out, git-commit /work/repo but not /dev/null."""
    def paths(example: str) -> set[str]:
        return {m["mountPath"] for m in pod(default_files(example))["spec"]["containers"][0].get("volumeMounts", ())}

    assert paths("c-build") == {"/build", "/tmp"}
    assert paths("data-processor") == {"/srv/out"}
    assert paths("git-commit") == {"/work/repo"}
    assert paths("hello") == set()


def test_resources_and_pids_note(at_root: None) -> None:
    """Memory and CPU become limits; pids has no field, so a comment points at podPidsLimit."""
    hello = default_files("hello")
    assert pod(hello)["spec"]["containers"][0]["resources"] == {"limits": {"memory": "64Mi"}}
    assert "# pids.max 4 has no container field" in hello["pod.yaml"]
    assert "podPidsLimit" in hello["pod.yaml"]
    c_build = pod(default_files("c-build"))["spec"]["containers"][0]
    assert c_build["resources"] == {"limits": {"memory": "1Gi", "cpu": "2"}}


def test_quantities() -> None:
    """Bytes take the largest exact binary suffix; CPU is whole cores or millicores."""
    assert memory_quantity(268435456) == "256Mi"
    assert memory_quantity(1 << 30) == "1Gi"
    assert memory_quantity(1536 * 1024) == "1536Ki"
    assert memory_quantity(1000) == "1000"
    assert cpu_quantity(50000, 100000) == "500m"
    assert cpu_quantity(200000, 100000) == "2"
    assert cpu_quantity(1000, 100000) == "10m"


def test_cpu_limit_from_a_fraction(tmp_path: Path) -> None:
    """limits.cpu 0.5 becomes cpu: 500m."""
    plan = plan_from_text(tmp_path, "sandboxer: 1\nname: half\nimports: {wasi:cli/stdout: {}}\n"
                                    "limits: {cpu: 0.5, memory: 256Mi}\n")
    files = export_k8s(plan, image="i")
    assert pod(files)["spec"]["containers"][0]["resources"]["limits"] == {"memory": "256Mi", "cpu": "500m"}


def test_environment_set_becomes_env(at_root: None) -> None:
    """environment.set values are the container's env, sorted by name."""
    env = pod(default_files("git-commit"))["spec"]["containers"][0]["env"]
    assert {"name": "HOME", "value": "/work/repo"} in env
    assert [e["name"] for e in env] == sorted(e["name"] for e in env)
    assert "env" not in pod(default_files("hello"))["spec"]["containers"][0]


def test_wall_time_is_an_active_deadline(at_root: None) -> None:
    """A bare Pod runs once and is stopped after the wall time (rounded up to whole seconds)."""
    spec = pod(default_files("hello"))["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 10
    assert spec["automountServiceAccountToken"] is False


def test_seccomp_json_is_the_oci_export(at_root: None) -> None:
    """seccomp/<name>.json is the canonical OCI JSON of the plan's seccomp section."""
    plan = plan_of("tcp-client")
    files = export_k8s(plan, image="i")
    assert files["seccomp/tcp-client.json"] == dumps(export_oci(plan["seccomp"]))


def test_volume_names_are_dns_labels() -> None:
    """Paths become unique DNS-1123 labels."""
    taken: set[str] = set()
    assert volume_name("/srv/out", taken) == "srv-out"
    assert volume_name("/srv_out", taken) == "srv-out-2"
    assert volume_name("/", taken) == "root"
    assert volume_name("/Work/A.B", taken) == "work-a-b"


def test_name_names_everything(at_root: None) -> None:
    """--name renames the objects, the profile file, and the label the NetworkPolicy selects."""
    files = export_k8s(plan_of("hello"), name="greeter", image="i")
    assert "seccomp/greeter.json" in files
    p = pod(files)
    assert p["metadata"]["name"] == "greeter" and p["metadata"]["labels"] == {"sandboxer/policy": "greeter"}
    assert p["spec"]["securityContext"]["seccompProfile"]["localhostProfile"] == "sandboxer/greeter.json"
    assert netpol(files)["spec"]["podSelector"] == {"matchLabels": {"sandboxer/policy": "greeter"}}


# ---------------------------------------------------------------- NetworkPolicy


def test_hello_network_policy_denies_everything(at_root: None) -> None:
    """No socket grant: both policy types, no rules at all."""
    spec = netpol(default_files("hello"))["spec"]
    assert spec == {"podSelector": {"matchLabels": {"sandboxer/policy": "hello"}},
                    "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("example", ["c-build", "data-processor", "git-commit", "shell-pipeline", "sqlite"])
def test_examples_without_sockets_deny_everything(example: str, at_root: None) -> None:
    """Every example without a socket grant gets the deny-all policy."""
    if example not in EXAMPLES:
        pytest.skip(f"examples/{example}.yaml is gone")
    spec = netpol(default_files(example))["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in spec and "egress" not in spec


def test_tcp_client_may_reach_port_8080_only(at_root: None) -> None:
    """tcp-client: one egress rule on TCP 8080, no ingress."""
    spec = netpol(default_files("tcp-client"))["spec"]
    assert spec["egress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    assert "ingress" not in spec
    assert spec["policyTypes"] == ["Ingress", "Egress"]


def test_bind_udp_and_dns(tmp_path: Path) -> None:
    """bind ports open ingress; ip-name-lookup adds UDP+TCP 53; udp allows egress UDP on any port, said so."""
    plan = plan_from_text(tmp_path, "sandboxer: 1\nname: server\nimports:\n"
                                    "  wasi:sockets/tcp: {connect: [443], bind: [8443]}\n"
                                    "  wasi:sockets/udp: {}\n  wasi:sockets/ip-name-lookup: {}\n")
    files = export_k8s(plan, image="i")
    spec = netpol(files)["spec"]
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8443}]}]
    assert spec["egress"] == [{"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "UDP", "port": 53},
                                         {"protocol": "TCP", "port": 53}, {"protocol": "UDP"}]}]
    assert "UDP to ANY port" in files["networkpolicy.yaml"]


def test_loopback_network_denies_everything(tmp_path: Path) -> None:
    """network: loopback with a TCP grant stays inside the pod: no NetworkPolicy rule."""
    plan = plan_from_text(tmp_path, "sandboxer: 1\nname: local\nnetwork: loopback\n"
                                    "imports: {wasi:sockets/tcp: {connect: [5432]}}\n")
    spec = netpol(export_k8s(plan, image="i"))["spec"]
    assert "ingress" not in spec and "egress" not in spec


# ---------------------------------------------------------------- headers


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_yaml_file_opens_with_a_readme_header(example: str, at_root: None) -> None:
    """What the file is, the node copy and kubectl commands, and what Kubernetes cannot express."""
    for files in (default_files(example), entrypoint_files(example)):
        for rel, text in files.items():
            if not rel.endswith(".yaml"):
                continue
            head = text.split("\n\n", 1)[0]
            assert all(line.startswith("#") for line in head.splitlines()), rel
            assert head.startswith(f"# {rel}: "), rel
            assert (f"install -D -m 0644 seccomp/{example}.json "
                    f"/var/lib/kubelet/seccomp/sandboxer/{example}.json") in head
            assert "kubectl -n sandboxed apply -f networkpolicy.yaml" in head
            assert "WHAT KUBERNETES CANNOT EXPRESS" in head
            assert "Landlock path rules" in head and "Landlock scopes" in head
            assert "wall-time" in head
            assert "--entrypoint" in head or "sandboxer run" in head


def test_header_lists_the_tcp_port_rules_and_recommends_the_entrypoint(at_root: None) -> None:
    """tcp-client's header names connect 8080 as a container-level rule and points at --entrypoint."""
    head = default_files("tcp-client")["pod.yaml"]
    assert "TCP port rules inside the container (connect 8080)" in head
    assert "/usr/bin/python3: read+exec" in head
    assert "regenerate with `sandboxer k8s --entrypoint" in head
    assert "kubectl -n sandboxed apply -f pod.yaml" in head


def test_complain_mode_is_named(tmp_path: Path) -> None:
    """on-violation: log is listed among what Kubernetes cannot carry."""
    plan = plan_from_text(tmp_path, "sandboxer: 1\nname: complain\non-violation: log\n"
                                    "imports: {wasi:cli/stdout: {}}\n")
    assert "complain mode (on-violation: log)" in export_k8s(plan, image="i")["pod.yaml"]


# ---------------------------------------------------------------- SPO SeccompProfile


@pytest.mark.parametrize("example", EXAMPLES)
def test_seccomp_profile_resource_carries_the_same_rules(example: str, at_root: None) -> None:
    """The SPO SeccompProfile has the OCI profile's defaultAction, architectures and syscalls (minus comments)."""
    plan = plan_of(example)
    oci = export_oci(plan["seccomp"])
    sp = yaml.safe_load(default_files(example)["seccompprofile.yaml"])
    assert sp["apiVersion"] == "security-profiles-operator.x-k8s.io/v1beta1"
    assert sp["kind"] == "SeccompProfile"
    assert sp["metadata"]["name"] == example
    assert sp["spec"]["defaultAction"] == oci["defaultAction"]
    assert sp["spec"]["architectures"] == oci["architectures"]
    assert sp["spec"]["syscalls"] == [{k: v for k, v in e.items() if k != "comment"} for e in oci["syscalls"]]


# ---------------------------------------------------------------- entrypoint and patch


def test_entrypoint_wraps_the_command_and_mounts_the_plan(at_root: None) -> None:
    """The command runs under `sandboxer run /etc/sandboxer/plan --`, with the ConfigMap mounted there."""
    files = export_k8s(plan_of("hello"), image="i", entrypoint=True, command=["/usr/bin/echo", "hi"])
    spec = pod(files)["spec"]
    (c,) = spec["containers"]
    assert c["command"] == ["sandboxer", "run", "/etc/sandboxer/plan", "--", "/usr/bin/echo", "hi"]
    assert {"name": "sandboxer-plan", "mountPath": "/etc/sandboxer/plan", "readOnly": True} in c["volumeMounts"]
    assert {"name": "sandboxer-plan", "configMap": {"name": "hello-sandboxer-plan"}} in spec["volumes"]
    # the launcher needs fork and Landlock setup, which the workload's own profile denies
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("example", EXAMPLES)
def test_config_map_is_a_compiled_directory(example: str, at_root: None, tmp_path: Path) -> None:
    """plan.json + seccomp.bpf from the ConfigMap read back as a compiled directory, cgroups and netns left to Kubernetes."""
    plan = plan_of(example)
    files = export_k8s(plan, image="i", entrypoint=True, command=["/x"], manifest_text="sandboxer: 1\n")
    cm = yaml.safe_load(files["configmap.yaml"])
    assert cm["metadata"]["name"] == f"{example}-sandboxer-plan"
    assert cm["data"]["manifest.yaml"] == "sandboxer: 1\n"
    (tmp_path / "plan.json").write_text(cm["data"]["plan.json"])
    (tmp_path / "seccomp.bpf").write_bytes(base64.b64decode(cm["binaryData"]["seccomp.bpf"]))
    carried, bpf = read_bundle(str(tmp_path))
    assert carried == json.loads(dumps(plan_for_pod(plan)))
    assert bpf == assemble(plan["seccomp"])
    assert carried["cgroups"] == {} and carried["netns"] == {"mode": "host"}
    assert carried["seccomp"] == plan["seccomp"] and carried["landlock"] == plan["landlock"]
    noted = {d["mechanism"] for d in carried["degradations"] if d["severity"] == "note"}
    assert noted == ({"cgroups"} if plan["cgroups"] else set()) | ({"netns"} if plan["netns"]["mode"] != "host" else set())


def test_patch_is_a_strategic_merge_patch(at_root: None) -> None:
    """--patch: only spec.template, with the policy label the NetworkPolicy selects; no Pod-only fields."""
    files = export_k8s(plan_of("data-processor"), patch=True)
    assert "pod.yaml" not in files
    patch = yaml.safe_load(files["deployment-patch.yaml"])
    assert set(patch) == {"spec"} and set(patch["spec"]) == {"template"}
    template = patch["spec"]["template"]
    assert template["metadata"]["labels"] == {"sandboxer/policy": "data-processor"}
    assert "restartPolicy" not in template["spec"] and "activeDeadlineSeconds" not in template["spec"]
    (c,) = template["spec"]["containers"]
    assert c["name"] == "data-processor" and "image" not in c and "command" not in c
    assert c["securityContext"] == SECURITY_CONTEXT
    assert "kubectl -n default patch deployment DEPLOYMENT --patch-file deployment-patch.yaml" in files[
        "deployment-patch.yaml"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "a Pod needs --image"),
    ({"image": "i", "entrypoint": True}, "--entrypoint wraps the container's command"),
    ({"image": "i", "name": "Bad_Name"}, "name 'Bad_Name' is not a DNS-1123 label"),
    ({"image": "i", "namespace": "-x"}, "namespace '-x' is not a DNS-1123 label"),
])
def test_unusable_input_is_a_value_error(kwargs: dict, message: str, at_root: None) -> None:
    """Missing image or command and bad names are refused with a message saying what to pass."""
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        export_k8s(plan_of("hello"), **kwargs)


# ---------------------------------------------------------------- schema validation

try:
    import kubernetes_validate as kv
except ImportError:  # a test extra: pip install -e '.[test]'
    kv = None
needs_kv = pytest.mark.skipif(kv is None, reason="kubernetes-validate is not installed (pip install -e '.[test]')")
# Two versions the issue names and the newest the package ships (1.25-1.37 in kubernetes-validate 1.37.0).
K8S_VERSIONS = ("1.29", "1.33", kv.latest_version() if kv else "1.37")


def strategic_merge(base: object, patch: object) -> object:
    """Enough of kubectl's strategic merge for our patch: maps merge, named lists merge by name/mountPath."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = strategic_merge(base[k], v) if k in base else v
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) for x in base + patch):
        key = next((k for k in ("name", "mountPath") if all(k in x for x in base + patch)), None)
        if key:
            out_list = [copy.deepcopy(x) for x in base]
            for item in patch:
                match = [i for i, x in enumerate(out_list) if x[key] == item[key]]
                if match:
                    out_list[match[0]] = strategic_merge(out_list[match[0]], item)
                else:
                    out_list.append(item)
            return out_list
    return patch


def deployment(container: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": container, "image": "nginx:1.27",
                                                           "volumeMounts": [{"name": "cache", "mountPath": "/c"}]}],
                                           "volumes": [{"name": "cache", "emptyDir": {}}]}}}}


def validate(obj: dict, version: str) -> None:
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as e:
        raise AssertionError(f"{obj['kind']} invalid for Kubernetes {version}: {e.message} at {list(e.path)}") from None


@needs_kv
def test_schema_versions_are_shipped() -> None:
    """kubernetes-validate ships schemas for every version we validate against."""
    shipped = {".".join(v.split(".")[:2]) for v in kv.utils.all_versions()}
    assert {".".join(v.split(".")[:2]) for v in K8S_VERSIONS} <= shipped


@needs_kv
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("example", EXAMPLES)
def test_objects_validate_against_kubernetes_schemas(example: str, version: str, at_root: None) -> None:
    """Pod, NetworkPolicy, ConfigMap, and a Deployment with the patch applied, are valid (strict: no unknown fields)."""
    plan = plan_of(example)
    for kwargs in ({"image": "i:1"}, {"image": "i:1", "entrypoint": True, "command": ["/x"]}):
        files = export_k8s(plan, **kwargs)
        for rel in ("pod.yaml", "networkpolicy.yaml", "configmap.yaml"):
            if rel in files:
                validate(yaml.safe_load(files[rel]), version)
    for kwargs in ({}, {"entrypoint": True, "command": ["/x"]}):
        patch = yaml.safe_load(export_k8s(plan, patch=True, **kwargs)["deployment-patch.yaml"])
        merged = strategic_merge(deployment(example), patch)
        validate(merged, version)
        (c,) = merged["spec"]["template"]["spec"]["containers"]
        assert c["image"] == "nginx:1.27" and c["securityContext"] == SECURITY_CONTEXT


@needs_kv
def test_validation_catches_a_bad_field() -> None:
    """The strict schemas do reject what the API server would (the check above is not vacuous)."""
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [{"name": "x", "image": "i", "securityContext": {"readOnlyRootFS": True}}]}}
    with pytest.raises(AssertionError, match="readOnlyRootFS"):
        validate(bad, "1.33")


# ---------------------------------------------------------------- CLI


def test_cli_writes_the_files(tmp_path: Path, at_root: None) -> None:
    """`sandboxer k8s` writes each file under -o, the Localhost JSON in seccomp/."""
    result = CliRunner().invoke(app, ["k8s", "examples/hello.yaml", "-o", str(tmp_path), "--image", "i:1",
                                      "-n", "sandboxed", "--entrypoint", "--", "/usr/bin/echo", "hi"])
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["configmap.yaml", "networkpolicy.yaml", "pod.yaml", "seccomp/hello.json",
                       "seccompprofile.yaml"]
    assert yaml.safe_load((tmp_path / "pod.yaml").read_text())["spec"]["containers"][0]["command"][-2:] == [
        "/usr/bin/echo", "hi"]
    cm = yaml.safe_load((tmp_path / "configmap.yaml").read_text())
    assert cm["data"]["manifest.yaml"] == (ROOT / "examples" / "hello.yaml").read_text()


def test_cli_usage_errors_exit_2(tmp_path: Path, at_root: None) -> None:
    """No image and no --patch is a usage error with the hint, and nothing is written."""
    result = CliRunner().invoke(app, ["k8s", "examples/hello.yaml", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "a Pod needs --image" in result.output
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- purity


@pytest.mark.parametrize("module", ["k8s.py", "oci_import.py"])
def test_exporters_are_pure(module: str) -> None:
    """The exporters import nothing that touches the kernel or runs programs, and open no files."""
    import ast

    tree = ast.parse((ROOT / "sandboxer" / "export" / module).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"ctypes", "subprocess", "pyseccomp", "pyroute2", "os", "shutil", "pathlib"}
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "open" not in calls
