"""A fingerprint of the CPU kernels' last digits: run it on two machines and compare the lines.

Each line is a short hash of the exact bits that one kind of numerical kernel returns on fixed
inputs (numpy's transcendentals and sort, OpenBLAS gemm/solve, torch's matmul, vector math,
softmax, a few training steps of a transformer layer). Equal hashes = the same bits, so this
tells which parts of a run can be bit-identical between two machines (README
"Reproducibility"). It applies the workflow's pins first (``starfm.kernels``; set
``STARFM_CPU_KERNELS=native`` to see the unpinned kernels).

    python benchmarks/kernel_fingerprint.py
    qemu-x86_64 -cpu Haswell $(which python) benchmarks/kernel_fingerprint.py   # an emulated AVX2 CPU

What we saw (README): numpy and OpenBLAS lines equal between our AVX-512 machine (pinned) and
emulated Haswell / EPYC-Rome; torch's matmul, exp, log and the training steps not (MKL's
vendor-specific paths and approximate instructions).
"""
from __future__ import annotations

import hashlib

from starfm import kernels

kernels.pin()

import numpy as np  # noqa: E402  (after the pins)
import torch  # noqa: E402


def _h(a) -> str:
    a = a.detach().contiguous().numpy() if isinstance(a, torch.Tensor) else np.ascontiguousarray(a)
    return hashlib.sha256(a.tobytes()).hexdigest()[:10]


def numpy_lines() -> dict[str, str]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-20, 20, 200_003)
    pos = np.abs(x) + 1e-3
    out = {}
    with np.errstate(all="ignore"):
        for name, fn, arg in (("exp", np.exp, x), ("log", np.log, pos), ("sin", np.sin, x),
                              ("tanh", np.tanh, x), ("expm1", np.expm1, x), ("power", None, pos)):
            for dtype in (np.float64, np.float32):
                a = arg.astype(dtype)
                out[f"numpy {name} {np.dtype(dtype).name}"] = _h(np.power(a, a / 7) if fn is None else fn(a))
    out["numpy sort float64"] = _h(np.sort(x))
    a = rng.normal(size=(300, 300))
    out["openblas dgemm"] = _h(a @ a)
    out["openblas solve"] = _h(np.linalg.solve(a, a[:, :5]))
    return out


def torch_lines() -> dict[str, str]:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 256, generator=g)
    w = torch.randn(256, 256, generator=g)
    out = {"torch sgemm": _h(x @ w), "torch exp": _h(torch.exp(x)), "torch sqrt": _h(torch.sqrt(x.abs())),
           "torch softmax": _h(torch.softmax(x, -1)), "torch gelu": _h(torch.nn.functional.gelu(x)),
           "torch layer_norm": _h(torch.nn.functional.layer_norm(x, (256,)))}
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0)
    opt = torch.optim.AdamW(layer.parameters(), 1e-3)
    inp = torch.randn(32, 20, 64, generator=g)
    for _ in range(10):
        opt.zero_grad()
        layer(inp).pow(2).mean().backward()
        opt.step()
    out["torch 10 AdamW steps"] = _h(layer(inp))
    return out


def main() -> int:
    print(kernels.describe())
    for name, digest in {**numpy_lines(), **torch_lines()}.items():
        print(f"{name:<24} {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
