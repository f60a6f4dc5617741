"""sandboxer: compile one WASI-named capability manifest into kernel confinement, and run under it."""

__version__ = "0.1.0"
