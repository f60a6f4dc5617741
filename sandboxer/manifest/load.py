"""Stage ①+②: read a manifest and everything it `extends:`, validate, and merge into one Policy."""

from __future__ import annotations

import os
from pathlib import Path

from ..cache import sha256
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
    docs = loader.load(str(path), None, ())
    if any(d.severity == "error" for d in loader.diags):
        files = list(loader.sources)  # in the order they were read: the manifest first
        order = lambda d: (files.index(d.span.file), d.span.line, d.span.col) if d.span and d.span.file in files else (-1, 0, 0)  # noqa: E731
        raise ManifestError(sorted(loader.diags, key=order), loader.sources)
    inputs = tuple((name, digest, real_dir) for name, (digest, real_dir) in loader.inputs.items())
    return _merge(docs, inputs)


class _Loader:
    def __init__(self) -> None:
        self.diags: list[Diagnostic] = []
        self.sources: dict[str, list[str]] = {}
        # (real file, real directory of the name) -> its documents and the sha256 of its bytes (None: unreadable)
        self.done: dict[tuple[str, str], tuple[list[Document], str | None]] = {}
        self.names: dict[str, str] = {}  # real path -> the name the user wrote
        self.inputs: dict[str, tuple[str, str]] = {}  # every name opened (absolute) -> (sha256, real dir), in order

    def load(self, file: str, at: Span | None, chain: tuple[str, ...]) -> list[Document]:
        """Documents in merge order (bases first, this file last).

        Built-in profiles are named `builtin:NAME` in spans, wherever sandboxer is installed.

        A file is loaded once per (real file, real directory of the name it was reached by): its
        relative `extends:` resolve from the directory of that name, so one file reached from two
        directories can extend two different bases, while two names in one directory are one unit
        (merged once, reported once). Every name is recorded in `inputs`, deduplicated or not.
        """
        display, file = file, source_path(file)
        real = os.path.realpath(file)
        real_dir = os.path.realpath(os.path.dirname(file) or ".")
        self.names.setdefault(real, display)
        if real in chain:
            names = dict(self.names)
            cycle = " -> ".join(names.get(r, r) for r in [*chain[chain.index(real):], real])
            self.diags.append(Diagnostic(at, f"extends cycle: {cycle}", "remove one of these extends entries"))
            return []
        unit = (real, real_dir)
        if unit in self.done:
            docs, digest = self.done[unit]
            if digest is not None:
                self.inputs.setdefault(absolute(file), (digest, real_dir))
            return docs
        try:
            data = Path(file).read_bytes()
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            self.diags.append(Diagnostic(at, f"cannot read manifest '{file}': {reason}"))
            self.done[unit] = ([], None)
            return []
        digest = sha256(data).hexdigest()  # what is compiled, not a later re-read
        self.inputs.setdefault(absolute(file), (digest, real_dir))
        self.sources[display] = text.splitlines()
        root, diags = parse_yaml(text, display)
        self.diags += diags
        if root is None:
            self.done[unit] = ([], digest)
            return []
        doc, diags = validate_document(root, display)
        self.diags += diags
        docs: list[Document] = []
        for ref, span in doc.extends:
            target = self.resolve(ref, file, span)
            if target:
                docs += [d for d in self.load(target, span, (*chain, real)) if d not in docs]
        docs.append(doc)
        self.done[unit] = (docs, digest)
        return docs

    def resolve(self, ref: str, file: str, span: Span) -> str | None:
        if ref.startswith("builtin:"):
            name = ref.removeprefix("builtin:")
            if (PROFILES_DIR / f"{name}.yaml").is_file():
                return ref
            self.diags.append(Diagnostic(
                span, f"unknown built-in profile '{name}'{did_you_mean(name, builtin_profiles())}",
                f"built-in profiles: {', '.join(builtin_profiles())}"))
            return None
        if os.path.isabs(ref):
            return ref
        return fold(os.path.join(os.path.dirname(file), ref))  # ".." kept: the kernel resolves it past symlinks


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
