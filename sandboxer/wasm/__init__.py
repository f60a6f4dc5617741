"""WASI workloads: import check, wasmtime host (confined by the native plan), module cache, manifest skeletons."""
