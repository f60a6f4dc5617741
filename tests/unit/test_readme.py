"""The README's first screen and capability table stay true to the code."""

from pathlib import Path

from sandboxer.schema import capability_table

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_capability_table_is_generated_from_the_registry():
    """The table in the README is exactly what the registry renders."""
    assert capability_table() in README, "regenerate: python -c 'from sandboxer.schema import capability_table; print(capability_table())'"


def test_first_screen_has_install_run_and_test_commands():
    """The first screen shows the pipeline, one install+run command and one test command."""
    head = "\n".join(README.splitlines()[:15])
    assert "sandboxer run examples/" in head
    assert "python -m pytest" in head
