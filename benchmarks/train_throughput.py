"""Training throughput of each recipe (config.yaml ``recipes:``): stars per second, the context
sampler's share, and the paper recipe's projected wall time for the real sample.

    python benchmarks/train_throughput.py                      # both recipes, CPU, 1 thread
    python benchmarks/train_throughput.py --recipe paper --device cuda --steps 50

Each recipe runs real optimisation steps as ``starfm.train`` does (``draw_batch`` with the
recipe's sampler: spectra-in share, requests, label weight; ``train_step`` with its grad clip;
the recipe's model size and batch size; autocast on CUDA) on random standardised stars with
~10% of tokens absent, and times the sampling part separately. The projection is
``n_stars x epochs / (stars/s)`` with the paper's 4x10^5 stars and the recipe's epochs
(4,096), on the hardware the benchmark ran on.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from starfm.model import StarModel, model_config
from starfm.train import TrainConfig, autocast_dtype, draw_batch, resolve_device, train_step

ROOT = Path(__file__).resolve().parents[1]
REAL_SAMPLE_STARS = 400_000      # ~4x10^5 training stars (Zhang et al. 2026, Leung & Bovy 2024)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def recipe_config(name: str, config_path: Path = ROOT / "config.yaml") -> TrainConfig:
    """TrainConfig of ``recipes.<name>`` in config.yaml (train: seed etc. from its section)."""
    return TrainConfig.from_config(yaml.safe_load(Path(config_path).read_text()), recipe=name)


def measure(tcfg: TrainConfig, device: torch.device, steps: int, warmup: int, seed: int = 0,
            batch_size: int | None = None) -> dict:
    amp = autocast_dtype(device)
    cfg = model_config(tcfg.model_size)
    batch_size = batch_size or tcfg.batch_size
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    pool = 4 * batch_size
    x = torch.randn(pool, cfg.n_tokens, generator=gen, device=device)
    x = x.masked_fill(torch.rand(x.shape, generator=gen, device=device) < 0.1, float("nan"))
    e = torch.full_like(x, 0.05)
    model = StarModel(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    sampling = tcfg.sampling_tensors(device)
    weight, priority, keep = (sampling[k] for k in ("request_weight", "context_priority", "context_keep"))
    sample_s = total_s = 0.0
    for step in range(warmup + steps):
        idx = torch.randint(0, pool, (batch_size,), generator=gen, device=device)
        _sync(device)
        t0 = time.perf_counter()
        batch = draw_batch(x[idx], e[idx], cfg, tcfg.n_requests, weight, gen, priority,
                           tcfg.spectra_context_fraction, keep, tcfg.spectra_full_length,
                           sampling["context_anchor"], tcfg.label_context_fraction)
        _sync(device)
        t1 = time.perf_counter()
        train_step(model, opt, scaler, batch, amp, tcfg.length_chunks, tcfg.grad_clip)
        _sync(device)
        t2 = time.perf_counter()
        if step >= warmup:
            sample_s += t1 - t0
            total_s += t2 - t0
    return {"parameters": sum(p.numel() for p in model.parameters()), "amp": amp,
            "batch_size": batch_size, "stars_per_s": batch_size * steps / total_s,
            "step_ms": 1000 * total_s / steps, "sampler_share": sample_s / total_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--recipe", default="both", choices=["cpu", "paper", "both"])
    p.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps after --warmup (default: 10 for cpu, 3 for paper on CPU)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (training's default: 1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    names = ["cpu", "paper"] if args.recipe == "both" else [args.recipe]
    for name in names:
        tcfg = recipe_config(name, args.config)
        steps = args.steps or (3 if device.type == "cpu" and tcfg.model_size == "paper" else 10)
        r = measure(tcfg, device, steps, args.warmup, args.seed, args.batch_size)
        precision = f"autocast {r['amp']}" if r["amp"] else "fp32"
        print(f"recipe {name}: size {tcfg.model_size} ({r['parameters']:,} parameters), device "
              f"{device} {precision}, "
              f"threads {torch.get_num_threads()}, batch {r['batch_size']}, "
              f"{tcfg.n_requests} request(s)/star, spectra-in share {tcfg.spectra_context_fraction}, "
              f"{steps} steps")
        print(f"  stars/second: {r['stars_per_s']:.1f}   step: {r['step_ms']:.1f} ms   "
              f"context sampler share: {100 * r['sampler_share']:.2f}%")
        wall = REAL_SAMPLE_STARS * tcfg.epochs / r["stars_per_s"]
        print(f"  projected: {REAL_SAMPLE_STARS:,} stars x {tcfg.epochs} epochs = "
              f"{wall / 3600:,.1f} h ({wall / 86400:,.1f} days) on this hardware")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
