"""The typer app: parses flags, calls the pipeline, renders errors. No policy logic lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import SandboxerError, UsageError
from .manifest.load import load_policy
from .plan import Target, compile_plan, dumps

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Compile a WASI-named capability manifest into kernel confinement, and run under it.",
                  context_settings={"help_option_names": ["-h", "--help"]})


def _fail(e: SandboxerError) -> None:
    typer.echo(e.render(), err=True)
    raise typer.Exit(e.exit_code)


def _target(arch: Optional[str], landlock_abi: Optional[int]) -> Target:
    from .mechanisms.landlock.rights import NEWEST_ABI
    from .mechanisms.seccomp.tables import ARCHES

    arch = arch or Target.host_arch()
    if arch not in ARCHES:
        raise UsageError(f"unknown --arch {arch!r} (known: {', '.join(ARCHES)})")
    abi = NEWEST_ABI if landlock_abi is None else landlock_abi
    if not 1 <= abi <= NEWEST_ABI:
        raise UsageError(f"--landlock-abi must be 1..{NEWEST_ABI}, not {abi}")
    return Target(arch, abi)


ARCH_OPT = typer.Option(None, "--arch", help="target architecture: x86_64 or aarch64 (default: this host)")
ABI_OPT = typer.Option(None, "--landlock-abi", help="target Landlock ABI 1-7 (default: the newest known)")


@app.command()
def check(manifests: List[Path] = typer.Argument(..., help="manifests to check"),
          wasm: Optional[Path] = typer.Option(None, "--wasm", help="also check that the manifests grant every "
                                              "import of this WebAssembly module or component"),
          arch: Optional[str] = ARCH_OPT, landlock_abi: Optional[int] = ABI_OPT) -> None:
    """Validate manifests and compile them (no side effects); exit 0 when all are fine, 2 otherwise."""
    failed = False
    try:
        target = _target(arch, landlock_abi)
    except SandboxerError as e:
        _fail(e)
    for m in manifests:
        try:
            plan = compile_plan(load_policy(m), target)
            if wasm is not None:
                from .wasm.run import check_or_raise

                check_or_raise(plan, str(wasm), str(m))
            typer.echo(f"{m}: ok" + (f" (grants every import of {wasm})" if wasm is not None else ""))
        except SandboxerError as e:
            typer.echo(e.render(), err=True)
            failed = True
    raise typer.Exit(2 if failed else 0)


@app.command()
def init(from_wasm: Optional[Path] = typer.Option(None, "--from-wasm", help="a WASI module or component"),
         from_wit: Optional[Path] = typer.Option(None, "--from-wit", help="a WIT file with a world"),
         out: Optional[Path] = typer.Option(None, "-o", help="write here (refuses to overwrite) instead of stdout")) -> None:
    """Write a manifest skeleton with one entry per import of a module (--from-wasm) or WIT world (--from-wit)."""
    from .wasm.init import write_skeleton

    try:
        write_skeleton(from_wasm, from_wit, out)
    except SandboxerError as e:
        _fail(e)


@app.command("compile")
def compile_cmd(manifest: Path = typer.Argument(..., help="the manifest"),
                out: Path = typer.Option(..., "-o", "--out", help="directory to write the plan into"),
                arch: Optional[str] = ARCH_OPT, landlock_abi: Optional[int] = ABI_OPT) -> None:
    """Write plan.json, seccomp.bpf/.txt/.pfc and seccomp.oci.json (byte-identical on reruns)."""
    from .export.bundle import render_bundle
    from .mechanisms.seccomp.libseccomp import build_from_oci, export_pfc

    try:
        target = _target(arch, landlock_abi)
        plan = compile_plan(load_policy(manifest), target)
    except SandboxerError as e:
        _fail(e)
    files = render_bundle(plan)
    oci = json.loads(files["seccomp.oci.json"])
    files["seccomp.pfc"] = export_pfc(build_from_oci(oci, target.arch, 2)).encode()
    out.mkdir(parents=True, exist_ok=True)
    for name, data in sorted(files.items()):
        (out / name).write_bytes(data)
    typer.echo(f"{manifest} -> {out}/ ({', '.join(sorted(files))})")


@app.command()
def explain(manifest: Optional[Path] = typer.Argument(None, help="the manifest to explain"),
            list_: bool = typer.Option(False, "--list", help="list every capability instead"),
            arch: Optional[str] = ARCH_OPT, landlock_abi: Optional[int] = ABI_OPT) -> None:
    """Show what each grant opens: syscalls, Landlock rights and ports, and whether this host enforces it."""
    from .explain import explain_plan, list_capabilities

    if list_ or manifest is None:
        typer.echo(list_capabilities())
        return
    try:
        plan = compile_plan(load_policy(manifest), _target(arch, landlock_abi))
    except SandboxerError as e:
        _fail(e)
    typer.echo(explain_plan(plan))


@app.command()
def probe(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Report what this host's kernel can enforce: seccomp, Landlock, cgroups, namespaces."""
    from .probe import probe_host, render_probe

    report = probe_host()
    typer.echo(dumps(report) if as_json else render_probe(report), nl=not as_json)


@app.command()
def schema(out: Optional[Path] = typer.Option(None, "-o", help="write here instead of stdout")) -> None:
    """Print the manifest JSON Schema generated from the capability registry."""
    from .schema import manifest_schema

    text = dumps(manifest_schema())
    if out:
        out.write_text(text)
    else:
        sys.stdout.write(text)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(ctx: typer.Context) -> None:
    """Run a command under a manifest: sandboxer run MANIFEST|DIR [options] -- CMD ARGS…  (see `sandboxer run --help`)."""
    from .runner import main as run_main

    raise typer.Exit(run_main(list(ctx.args)))


@app.command()
def k8s(manifest: Path = typer.Argument(..., help="the manifest"),
        command: Optional[List[str]] = typer.Argument(None, help="the container's command, after --"),
        out: Path = typer.Option(..., "-o", "--out", help="directory to write the Kubernetes files into"),
        image: Optional[str] = typer.Option(None, "--image", help="container image (required without --patch)"),
        name: Optional[str] = typer.Option(None, "--name", help="object and profile name (default: the manifest's name)"),
        namespace: str = typer.Option("default", "--namespace", "-n", help="namespace of every object"),
        entrypoint: bool = typer.Option(False, "--entrypoint",
                                        help="run the command under `sandboxer run` with the plan from a ConfigMap"),
        patch: bool = typer.Option(False, "--patch", help="a strategic-merge patch for a Deployment instead of a Pod"),
        arch: Optional[str] = ARCH_OPT, landlock_abi: Optional[int] = ABI_OPT) -> None:
    """Write a Pod (or Deployment patch), NetworkPolicy, Localhost seccomp JSON and SPO SeccompProfile."""
    from .export.k8s import export_k8s

    try:
        plan = compile_plan(load_policy(manifest), _target(arch, landlock_abi))
        files = export_k8s(plan, name=name, namespace=namespace, image=image, entrypoint=entrypoint,
                           patch=patch, command=command or None, manifest_text=manifest.read_text())
    except ValueError as e:
        _fail(UsageError(str(e)))
    except SandboxerError as e:
        _fail(e)
    for rel, text in sorted(files.items()):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    typer.echo(f"{manifest} -> {out}/ ({', '.join(sorted(files))})")


@app.command("import-oci")
def import_oci_cmd(profile: Path = typer.Argument(..., help="an OCI/Docker seccomp profile (JSON)"),
                   as_json: bool = typer.Option(False, "--json", help="machine-readable report"),
                   manifest: bool = typer.Option(False, "--manifest", help="print a manifest skeleton instead"),
                   arch: Optional[str] = typer.Option(None, "--arch", help="x86_64 or aarch64 (default: this host)")) -> None:
    """Read an OCI seccomp profile: what it allows, as capabilities, and what no capability grants."""
    from .export.oci_import import import_oci, render_import, suggest_manifest

    try:
        arch = _target(arch, None).arch
        data = json.loads(profile.read_text())
        if not isinstance(data, dict) or "defaultAction" not in data:
            raise UsageError(f"{profile}: not an OCI seccomp profile (no defaultAction)")
    except (OSError, ValueError) as e:
        _fail(UsageError(f"cannot read {profile}: {e}"))
    except SandboxerError as e:
        _fail(e)
    report = import_oci(data, arch)
    if as_json:
        typer.echo(dumps(report), nl=False)
    elif manifest:
        typer.echo(suggest_manifest(report), nl=False)
    else:
        typer.echo(render_import(report), nl=False)


@app.command()
def audit(file: str = typer.Argument(..., help="audit records (JSON lines) from `sandboxer run --audit`; - for stdin"),
          as_json: bool = typer.Option(False, "--json", help="the summary as JSON (with --follow: each record)"),
          follow: bool = typer.Option(False, "--follow", "-f", help="keep reading appended records until Ctrl-C"),
          suggest: bool = typer.Option(False, "--suggest", help="print the manifest patch that allows everything recorded"),
          sandbox: Optional[str] = typer.Option(None, "--id", help="only the records of this sandbox (its id or a prefix)")) -> None:
    """Summarise audit records: violations by capability with suggestions, limits hit, exits."""
    from .audit.cli import main as audit_main

    raise typer.Exit(audit_main(file, as_json=as_json, follow=follow, suggest=suggest, sandbox=sandbox))
