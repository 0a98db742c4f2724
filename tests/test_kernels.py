"""The CPU-kernel pins (starfm.kernels): set where unset, never over a user's choice, off in
native mode, and effective (the libraries run their AVX2 kernels, not AVX-512)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from starfm import kernels

X86 = platform.machine().lower() in ("x86_64", "amd64")


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in kernels.PORTABLE_PINS and k != kernels.ENV_VAR}
    env.update(extra)
    return env


def _run(code: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


PROBE = """
import json, os
from starfm import kernels
set_now = kernels.pin()
import numpy, torch
from numpy._core._multiarray_umath import __cpu_features__ as f
print(json.dumps({"set": set_now, "torch": torch.backends.cpu.get_cpu_capability(),
                  "numpy_v4": bool(f.get("X86_V4")), "env": {k: os.environ.get(k) for k in kernels.PORTABLE_PINS},
                  "describe": kernels.describe()}))
"""


@pytest.mark.skipif(not X86, reason="the pins are x86-64 names")
def test_portable_pins_make_the_libraries_use_avx2_kernels():
    got = _run(PROBE, _clean_env())
    assert got["set"] == kernels.PORTABLE_PINS
    assert got["torch"] in ("AVX2", "DEFAULT"), got  # never AVX512, whatever the CPU offers
    assert got["numpy_v4"] is False, got
    assert "torch uses" in got["describe"] and "numpy uses at most AVX2" in got["describe"]


@pytest.mark.skipif(not X86, reason="the pins are x86-64 names")
def test_a_variable_the_user_set_is_kept():
    """ATEN_CPU_CAPABILITY=default (how we emulate an older CPU) survives the pins."""
    got = _run(PROBE, _clean_env(ATEN_CPU_CAPABILITY="default"))
    assert "ATEN_CPU_CAPABILITY" not in got["set"]
    assert got["torch"] == "DEFAULT"
    assert got["env"]["OPENBLAS_CORETYPE"] == "Haswell"


def test_native_mode_sets_nothing():
    got = _run(PROBE, _clean_env(STARFM_CPU_KERNELS="native"))
    assert got["set"] == {}
    assert all(v is None for v in got["env"].values())


def test_unknown_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="STARFM_CPU_KERNELS='fast': expected one of portable, native"):
        kernels.pin()


def test_every_stage_command_pins_before_loading_its_module():
    """`python -m starfm <stage>` is what every rule runs: it must pin before numpy or torch
    loads (a library already loaded keeps the kernels it chose), on any CPU."""
    code = ("import sys, json\n"
            "from starfm import kernels\n"
            "seen = {}\n"
            "real_pin = kernels.pin\n"
            "def spy(*a, **k):\n"
            "    seen['loaded_before_pin'] = sorted(m for m in ('numpy', 'torch') if m in sys.modules)\n"
            "    return real_pin(*a, **k)\n"
            "kernels.pin = spy\n"
            "sys.argv = ['starfm', 'zero-point', '--help']\n"
            "from starfm.__main__ import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "import os; print(json.dumps({**seen, 'numpy_now': 'numpy' in sys.modules,\n"
            "                            'mode': os.environ.get('STARFM_CPU_KERNELS')}))")
    got = _run(code, _clean_env())
    assert got == {"loaded_before_pin": [], "numpy_now": True, "mode": "portable"}


def test_library_source_runs_single_threaded_blas():
    """library-source's batched solves give thread-count-dependent results on OpenBLAS (8 vs 13
    stars failing the round trip): the stage command sets OPENBLAS_NUM_THREADS=1 before numpy
    loads, and only for that stage (a user's own value is kept)."""
    code = ("import sys, os, json\n"
            "sys.argv = ['starfm', '{stage}', '--help']\n"
            "from starfm.__main__ import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(json.dumps({{'threads': os.environ.get('OPENBLAS_NUM_THREADS')}}))")
    env = _clean_env()
    env.pop("OPENBLAS_NUM_THREADS", None)
    assert _run(code.format(stage="library-source"), env) == {"threads": "1"}
    assert _run(code.format(stage="zero-point"), env) == {"threads": None}
    assert _run(code.format(stage="library-source"), {**env, "OPENBLAS_NUM_THREADS": "2"}) == {"threads": "2"}
