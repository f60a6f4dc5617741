"""Stage ①+②: read a manifest and everything it `extends:`, validate, and merge into one Policy."""

from __future__ import annotations

import os
from pathlib import Path

from ..cache import read_regular, sha256
from ..errors import Diagnostic, ManifestError, Span
from ..model.policy import Grant, Limits, Policy, Preopen
from ..model.validate import Document, did_you_mean, validate_document
from ..paths import absolute, fold
from .located import parse_yaml

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


def builtin_profiles() -> list[str]:
    """Names of the built-in profiles (`builtin:NAME`)."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def source_path(name: str) -> str:
    """The file behind a span's file name (`builtin:NAME` → the installed profile)."""
    if name.startswith("builtin:"):
        return str(PROFILES_DIR / f"{name.removeprefix('builtin:')}.yaml")
    return name


def load_policy(path: str | os.PathLike) -> Policy:
    """Load, validate and merge a manifest; raises ManifestError listing every problem."""
    loader = _Loader()
    path = str(path)
    if path.startswith("builtin:"):
        path = "./" + path  # the manifest is a file: only an extends: entry names a built-in profile
    docs = [doc for _, doc in loader.load(path, None, ())]
    if any(d.severity == "error" for d in loader.diags):
        files = list(loader.sources)  # in the order they were read: the manifest first
        order = lambda d: (files.index(d.span.file), d.span.line, d.span.col) if d.span and d.span.file in files else (-1, 0, 0)  # noqa: E731
        raise ManifestError(sorted(loader.diags, key=order), loader.sources)
    inputs = tuple((name, digest, real_dir) for name, (digest, real_dir) in loader.inputs.items())
    return _merge(docs, inputs)


Unit = tuple  # (sha256 of the bytes, the real directory their relative extends: resolve from, or "")


class _Loader:
    def __init__(self) -> None:
        self.diags: list[Diagnostic] = []
        self.sources: dict[str, list[str]] = {}
        self.read: dict[str, tuple[bytes, str] | str] = {}  # absolute name -> (bytes, real dir), or why not
        self.parsed: dict[str, Document | None] = {}  # sha256 of the bytes -> their document (None: invalid)
        self.done: dict[Unit, list[tuple[Unit, Document]]] = {}  # unit -> its units and documents, in merge order
        self.names: dict[Unit, str] = {}  # unit -> the name the user wrote first, for messages
        self.inputs: dict[str, tuple[str, str]] = {}  # every name opened (absolute) -> (sha256, real dir), in order

    def _read(self, file: str) -> tuple[bytes, str] | str:
        """(the bytes of `file`, the real directory it is in), taken once per compile so that what is recorded
        is what is merged; or why it could not be read.

        Opened as the kernel resolves the name ("d.yaml/" is not d.yaml), without blocking, and only a
        regular file is read (cache.read_regular): a FIFO or a device could answer differently each time.
        """
        name = absolute(file)
        if name not in self.read:
            try:
                self.read[name] = (read_regular(file), os.path.realpath(os.path.dirname(file) or "."))
            except OSError as e:
                self.read[name] = e.strerror or str(e)
            except ValueError as e:  # a NUL in the name
                self.read[name] = str(e)
        return self.read[name]

    def load(self, file: str, at: Span | None, chain: tuple[Unit, ...]) -> list[tuple[Unit, Document]]:
        """(unit, document) pairs in merge order (bases first, this file last).

        Built-in profiles are named `builtin:NAME` in spans, wherever sandboxer is installed.

        Every name is opened and recorded in `inputs` (absolute name, sha256 of the bytes, the real
        directory it is in). What is merged is decided by those facts only, so a cached plan holds
        exactly while they do: a unit is the bytes, plus, when they extend something by a relative
        path, the real directory those paths resolve from. A unit is merged once, however many names
        reach it (a base applied again after a profile that overrode it would undo the override);
        two units with the same bytes are two places in the merge order.
        """
        display, file = file, source_path(file)
        got = self._read(file)
        try:
            if isinstance(got, str):
                raise ValueError(got)
            data, real_dir = got
            text = data.decode("utf-8")
        except ValueError as e:  # unreadable, or not UTF-8
            self.diags.append(Diagnostic(at, f"cannot read manifest '{file}': {e}"))
            return []
        digest = sha256(data).hexdigest()  # what is compiled, not a later re-read
        self.inputs.setdefault(absolute(file), (digest, real_dir))
        if digest not in self.parsed:
            self.sources[display] = text.splitlines()
            root, diags = parse_yaml(text, display)
            self.diags += diags
            doc = None
            if root is not None:
                doc, diags = validate_document(root, display)
                self.diags += diags
            self.parsed[digest] = doc
        doc = self.parsed[digest]
        if doc is None:
            return []
        relative = any(not (ref.startswith("builtin:") or os.path.isabs(ref)) for ref, _ in doc.extends)
        unit: Unit = (digest, real_dir if relative else "")
        self.names.setdefault(unit, display)
        if unit in chain:
            cycle = " -> ".join(self.names[u] for u in [*chain[chain.index(unit):], unit])
            self.diags.append(Diagnostic(at, f"extends cycle: {cycle}", "remove one of these extends entries"))
            return []
        if unit in self.done:
            return self.done[unit]
        out: list[tuple[Unit, Document]] = []
        for ref, span in doc.extends:
            target = self.resolve(ref, file, span)
            if target:
                seen = {u for u, _ in out}
                out += [(u, d) for u, d in self.load(target, span, (*chain, unit)) if u not in seen]
        out.append((unit, doc))
        self.done[unit] = out
        return out

    def resolve(self, ref: str, file: str, span: Span) -> str | None:
        if ref.startswith("builtin:"):
            name = ref.removeprefix("builtin:")
            if name in builtin_profiles():  # a name, not a path: "builtin:../x" is no profile
                return ref
            self.diags.append(Diagnostic(
                span, f"unknown built-in profile '{name}'{did_you_mean(name, builtin_profiles())}",
                f"built-in profiles: {', '.join(builtin_profiles())}"))
            return None
        target = fold(ref if os.path.isabs(ref) else os.path.join(os.path.dirname(file), ref))  # ".." kept
        # A relative "./builtin:x" is a file of that name here, never the profile: keep it a path.
        return "./" + target if target.startswith("builtin:") else target


def _merge(docs: list[Document], inputs: tuple[tuple[str, str, str], ...]) -> Policy:
    """Later documents win for settings; grants and paths are unions."""
    grants: dict[str, Grant] = {}
    preopens: dict[str, Preopen] = {}
    limits: dict[str, tuple[object, Span]] = {}
    compat: dict[str, str] = {}
    on_violation, network, network_at = "deny", None, None
    for doc in docs:
        for name, g in doc.grants.items():
            old = grants.get(name)
            grants[name] = g if old is None else Grant(
                name, _merge_params(old.params, g.params), g.why or old.why, g.at)
        for p in doc.preopens:
            old = preopens.get(p.path)
            preopens[p.path] = p if old is None else Preopen(
                p.path, old.access | p.access, p.why or old.why, p.at)
        limits.update(doc.limits)
        compat.update({k: v for k, (v, _) in doc.compat.items()})
        if doc.on_violation:
            on_violation = doc.on_violation[0]
        if doc.network:
            network, network_at = doc.network
    main = docs[-1]
    fields = {k.replace("-", "_"): v for k, (v, _) in limits.items()}
    return Policy(
        name=main.name or Path(main.file).stem,
        description=main.description or "",
        grants=dict(sorted(grants.items())),
        preopens=tuple(sorted(preopens.values(), key=lambda p: p.path)),
        limits=Limits(**fields, at={k: s for k, (_, s) in limits.items()}),
        on_violation=on_violation,
        compat={m: compat.get(m, "strict") for m in ("cgroups", "landlock", "netns", "seccomp")},
        network=network,
        network_at=network_at,
        sources=tuple(reversed([d.file for d in docs])),
        inputs=inputs,
    )


def _merge_params(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, list):
            out[k] = sorted(set(out.get(k, [])) | set(v))
        elif isinstance(v, dict):
            out[k] = {**out.get(k, {}), **v}
        else:
            out[k] = v
    return out
