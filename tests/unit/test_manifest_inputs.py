"""What the loader records as the inputs of a compiled plan (Policy.inputs), and how it counts a file it meets twice."""

from __future__ import annotations

import os
from pathlib import Path

from sandboxer.manifest.load import load_policy

HEAD = "sandboxer: 1\nname: {name}\n"


def test_every_name_is_an_input_with_its_digest_and_real_directory(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(HEAD.format(name="base"))
    (tmp_path / "alias.yaml").symlink_to("base.yaml")
    m = tmp_path / "m.yaml"
    m.write_text(HEAD.format(name="m") + "extends: [base.yaml, alias.yaml]\n")
    inputs = load_policy(str(m)).inputs
    assert [Path(p).name for p, _, _ in inputs] == ["m.yaml", "base.yaml", "alias.yaml"]
    assert inputs[1][1] == inputs[2][1] and {d for _, _, d in inputs} == {os.path.realpath(tmp_path)}


def test_a_file_reached_twice_from_one_directory_is_merged_once(tmp_path: Path) -> None:
    """a extends [b, c]; b sets open-files 16 over d; c extends d again as sub/../d: d is not applied a second time
    after b (which would put its 4096 back)."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "d.yaml").write_text(HEAD.format(name="d") + "limits: {open-files: 4096}\n")
    (tmp_path / "b.yaml").write_text(HEAD.format(name="b") + "extends: [d.yaml]\nlimits: {open-files: 16}\n")
    (tmp_path / "c.yaml").write_text(HEAD.format(name="c") + "extends: [sub/../d.yaml]\n")
    (tmp_path / "a.yaml").write_text(HEAD.format(name="a") + "extends: [b.yaml, c.yaml]\n")
    policy = load_policy(str(tmp_path / "a.yaml"))
    assert policy.limits.open_files == 16
    assert any(p.endswith("sub/../d.yaml") for p, _, _ in policy.inputs)  # still an input of its own


def test_a_diamond_of_two_names_per_level_stays_linear(tmp_path: Path) -> None:
    """Each level extends the next through two names in two plain directories: one load per file, not 2**levels."""
    levels = 24
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
    for i in range(levels):
        nxt = f"extends: [x/../f{i + 1}.yaml, y/../f{i + 1}.yaml]\n" if i + 1 < levels else ""
        (tmp_path / f"f{i}.yaml").write_text(HEAD.format(name=f"f{i}") + nxt)
    policy = load_policy(str(tmp_path / "f0.yaml"))
    assert len(policy.inputs) == 1 + 2 * (levels - 1)


def _limit(path: Path) -> int | None:
    return load_policy(str(path)).limits.open_files


def test_an_alias_and_a_copy_of_a_profile_merge_alike(tmp_path: Path) -> None:
    """Whether `e.yaml` is a symlink to d.yaml or a copy of it, the plan is the same (only recorded facts decide)."""
    (tmp_path / "d.yaml").write_text(HEAD.format(name="d") + "limits: {open-files: 4096}\n")
    (tmp_path / "b.yaml").write_text(HEAD.format(name="b") + "extends: [d.yaml]\nlimits: {open-files: 16}\n")
    (tmp_path / "c.yaml").write_text(HEAD.format(name="c") + "extends: [e.yaml]\n")
    (tmp_path / "m.yaml").write_text(HEAD.format(name="m") + "extends: [b.yaml, c.yaml]\n")
    (tmp_path / "e.yaml").write_text((tmp_path / "d.yaml").read_text())
    as_copy = _limit(tmp_path / "m.yaml")
    (tmp_path / "e.yaml").unlink()
    (tmp_path / "e.yaml").symlink_to("d.yaml")
    assert as_copy == _limit(tmp_path / "m.yaml") == 16


def test_a_base_reached_from_two_directories_is_merged_once_when_it_extends_nothing_relative(tmp_path: Path) -> None:
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
    (tmp_path / "x" / "d.yaml").write_text(HEAD.format(name="d") + "limits: {open-files: 4096}\n")
    (tmp_path / "y" / "d.yaml").symlink_to("../x/d.yaml")
    (tmp_path / "b.yaml").write_text(HEAD.format(name="b") + "extends: [x/d.yaml]\nlimits: {open-files: 16}\n")
    (tmp_path / "c.yaml").write_text(HEAD.format(name="c") + "extends: [y/d.yaml]\n")
    (tmp_path / "m.yaml").write_text(HEAD.format(name="m") + "extends: [b.yaml, c.yaml]\n")
    assert _limit(tmp_path / "m.yaml") == 16


def test_a_trailing_slash_names_a_directory_as_the_kernel_says(tmp_path: Path) -> None:
    import pytest

    from sandboxer.errors import ManifestError

    (tmp_path / "d.yaml").write_text(HEAD.format(name="d"))
    (tmp_path / "m.yaml").write_text(HEAD.format(name="m") + f"extends: [{tmp_path}/d.yaml/]\n")
    with pytest.raises(ManifestError, match="Not a directory"):
        load_policy(str(tmp_path / "m.yaml"))


def test_an_image_is_not_written_for_a_path_the_front_cannot_hold() -> None:
    from types import SimpleNamespace

    from sandboxer.launch import image

    child = SimpleNamespace(netns_mode="host", rootless=False, drop_bounding=True, null_stdio=(), uid=0, gid=0,
                            rlimits=())
    assert image.encode({}, None, child, 0, [("/m.yaml", "0" * 64, "/")]) is not None
    assert image.encode({}, None, child, 0, [("/m.yaml", "0" * 64, "/" + "d" * 5000)]) is None


def test_a_relative_name_that_looks_builtin_is_a_file(tmp_path: Path, monkeypatch) -> None:
    """`extends: [./builtin:x]` is the file "builtin:x" next to the manifest however the manifest was typed."""
    (tmp_path / "builtin:shell").write_text(HEAD.format(name="local") + "limits: {open-files: 16}\n")
    (tmp_path / "m.yaml").write_text(HEAD.format(name="m") + "extends: [./builtin:shell]\n")
    monkeypatch.chdir(tmp_path)
    assert _limit(Path("m.yaml")) == _limit(tmp_path / "m.yaml") == 16


def test_identical_files_in_two_directories_are_two_places_in_the_merge(tmp_path: Path) -> None:
    """a/x.yaml and b/x.yaml have the same bytes but extend their own base.yaml: each applies over its own base."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "base.yaml").write_text(HEAD.format(name="base") + "limits: {open-files: 4096}\n")
        (tmp_path / d / "x.yaml").write_text(HEAD.format(name="x") + "extends: [base.yaml]\nlimits: {open-files: 16}\n")
    (tmp_path / "m.yaml").write_text(HEAD.format(name="m") + "extends: [a/x.yaml, b/x.yaml]\n")
    assert _limit(tmp_path / "m.yaml") == 16


def test_a_fifo_is_not_a_manifest(tmp_path: Path) -> None:
    import pytest

    from sandboxer.errors import ManifestError

    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "m.yaml").write_text(HEAD.format(name="m") + "extends: [pipe.yaml]\n")
    with pytest.raises(ManifestError, match="not a regular file"):
        load_policy(str(tmp_path / "m.yaml"))


def test_builtin_names_a_profile_not_a_path(tmp_path: Path) -> None:
    import pytest

    from sandboxer.errors import ManifestError

    (tmp_path / "m.yaml").write_text(HEAD.format(name="m") + "extends: [builtin:../profiles/python3]\n")
    with pytest.raises(ManifestError, match="unknown built-in profile"):
        load_policy(str(tmp_path / "m.yaml"))


def test_the_cached_plan_keeps_the_manifest_name_as_typed(tmp_path: Path, monkeypatch) -> None:
    """The plan's locations ("at") name the manifest as typed: the same file typed two ways is two entries."""
    from sandboxer.runner import load_plan

    (tmp_path / "m.yaml").write_text(HEAD.format(name="m") + "imports:\n  wasi:filesystem/preopens:\n"
                                     "    - {path: /tmp, access: read}\n")
    monkeypatch.chdir(tmp_path)
    relative = str(load_plan("m.yaml")[0])
    absolute_plan = str(load_plan(str(tmp_path / "m.yaml"))[0])
    assert "'m.yaml:5:" in relative and f"{tmp_path}/m.yaml:5:" not in relative
    assert f"'{tmp_path}/m.yaml:5:" in absolute_plan


def test_a_nul_in_an_extends_entry_is_a_manifest_error(tmp_path: Path) -> None:
    import pytest

    from sandboxer.errors import ManifestError

    (tmp_path / "m.yaml").write_text(HEAD.format(name="m") + 'extends: ["a\\0b"]\n')
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_policy(str(tmp_path / "m.yaml"))


def test_the_cache_re_checks_a_profile_as_strictly_as_the_compiler_reads_it(tmp_path: Path) -> None:
    """A recorded profile replaced by a FIFO is a miss (never a blocking read), and compiling again refuses it."""
    import pytest

    from sandboxer.errors import ManifestError
    from sandboxer.runner import load_plan

    (tmp_path / "base.yaml").write_text(HEAD.format(name="base"))
    (tmp_path / "m.yaml").write_text(HEAD.format(name="m") + "extends: [base.yaml]\n")
    load_plan(str(tmp_path / "m.yaml"))
    (tmp_path / "base.yaml").unlink()
    os.mkfifo(tmp_path / "base.yaml")
    with pytest.raises(ManifestError, match="not a regular file"):
        load_plan(str(tmp_path / "m.yaml"))
