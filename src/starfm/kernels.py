"""Portable CPU kernels: the same numbers on AVX2 and AVX-512 x86 CPUs.

numpy, OpenBLAS (numpy's and scipy's), PyTorch's ATen, oneDNN and MKL each pick their SIMD
kernels at run time from the CPU they find. The AVX-512 kernels round differently from the
AVX2 ones (numpy's float64 ``exp``/``log``/``tanh``, OpenBLAS ``gemm``/``solve``, ATen's
``softmax``, oneDNN's GELU, ...): last-digit differences in the data stages that training then
amplifies into different models. ``pin()`` asks every one of them for its AVX2 kernels, the
widest that every x86-64 CPU of the last decade has, so a run gives the same files on either
kind of CPU (README, "Reproducibility", says what is and is not bit-identical).

The pins are environment variables that the libraries read when they load, so they must be
set before numpy or torch is imported: ``python -m starfm`` (every workflow stage) does it
first thing, the Snakefile does it for the jobs it starts (``cpu_kernels`` in config.yaml),
and the tests' conftest for the test process. A variable already set is left alone (so
``ATEN_CPU_CAPABILITY=default`` still lowers torch's kernels, e.g. to emulate another CPU);
``STARFM_CPU_KERNELS=native`` (config ``cpu_kernels: native``) sets none of them.

This module imports nothing heavy on purpose.
"""
from __future__ import annotations

import os
import platform

ENV_VAR = "STARFM_CPU_KERNELS"
MODES = ("portable", "native")

# x86-64 only: on other CPUs (aarch64) these names mean nothing or something else.
PORTABLE_PINS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",          # PyTorch ATen vectorised kernels (SLEEF, softmax, ...)
    "ONEDNN_MAX_CPU_ISA": "AVX2",           # oneDNN (torch's mkldnn ops, e.g. GELU)
    "MKL_CBWR": "AVX2",                     # MKL (torch's BLAS): conditional numerical reproducibility
    "OPENBLAS_CORETYPE": "Haswell",         # OpenBLAS of numpy and scipy: Haswell (AVX2) kernels
    # numpy >= 2 dispatch targets above AVX2 (its own SIMD exp/log/sin/tanh/sort ...)
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}


def _is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def pin(mode: str | None = None) -> dict[str, str]:
    """Set the portable kernel pins in ``os.environ`` (each only where unset); return what was set.

    ``mode`` defaults to ``$STARFM_CPU_KERNELS`` or ``portable``. Call before numpy or torch
    is imported: a library already loaded keeps the kernels it chose.
    """
    mode = mode or os.environ.get(ENV_VAR) or "portable"
    if mode not in MODES:
        raise ValueError(f"{ENV_VAR}={mode!r}: expected one of {', '.join(MODES)}")
    os.environ[ENV_VAR] = mode
    if mode == "native" or not _is_x86_64():
        return {}
    set_now = {k: v for k, v in PORTABLE_PINS.items() if k not in os.environ}
    os.environ.update(set_now)
    return set_now


def describe() -> str:
    """One line for the logs: the kernel pins in force and, for numpy and torch where already
    loaded, the kernels they chose (imports nothing)."""
    import sys

    parts = [f"{ENV_VAR}={os.environ.get(ENV_VAR, 'unset')}"]
    parts += [f"{var}={os.environ[var]}" for var in PORTABLE_PINS if var in os.environ]
    if "torch" in sys.modules:
        parts.append(f"torch uses {sys.modules['torch'].backends.cpu.get_cpu_capability()}")
    if "numpy" in sys.modules:
        try:
            from numpy._core._multiarray_umath import __cpu_features__ as feats
            parts.append("numpy uses " + ("AVX-512" if feats.get("X86_V4") else "at most AVX2"))
        except ImportError:  # numpy < 2 names its internals differently
            pass
    return "CPU kernels: " + ", ".join(parts)
