"""launch/front.c mirrors launch/image.py (format, tags, flags) and launch/sequence.py (step numbers)."""

from __future__ import annotations

import re
from pathlib import Path

from sandboxer.launch import image, sequence

FRONT = (Path(image.__file__).parent / "front.c").read_text()


def _enum(first: str) -> list[str]:
    body = re.search(r"enum \{ (" + first + r"\b[^}]*)\}", FRONT, re.S)
    assert body, f"no enum starting with {first} in front.c"
    return [name.split("=")[0].strip() for name in body.group(1).split(",") if name.strip()]


def test_image_format_and_magic_match() -> None:
    assert int(re.search(r"#define IMAGE_FORMAT (\d+)", FRONT).group(1)) == image.FORMAT
    magic = re.search(r"MAGIC\[8\] = \{([^}]*)\}", FRONT).group(1)
    assert "".join(c.strip().strip("'") for c in magic.split(",")).encode() == image.MAGIC


def test_record_tags_match() -> None:
    names = _enum("T_INPUT")
    assert {n: names.index(n) + 1 for n in names} == {n: getattr(image, n) for n in names}
    assert re.search(r"T_INPUT = 1", FRONT)


def test_flags_match() -> None:
    for name, value in re.findall(r"(F_[A-Z_]+) = (\d+)", FRONT):
        assert getattr(image, name) == int(value), name


def test_step_numbers_match() -> None:
    names = _enum("SETSID")
    assert [getattr(sequence, n) for n in names] == list(range(len(names)))
