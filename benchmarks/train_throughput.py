"""Training throughput of the foundation model: stars per second and the context sampler's share.

    python benchmarks/train_throughput.py --size small --device cpu --batch-size 512 --steps 10

Runs real optimisation steps (starfm.train.draw_batch + train_step: context and request
sampling, forward, loss, backward, AdamW; autocast on CUDA as in training) on random
standardised stars with ~10% of tokens absent, and times the sampling part separately.
"""
from __future__ import annotations

import argparse
import time

import torch

from starfm.model import StarModel, model_config
from starfm.train import TrainConfig, autocast_dtype, draw_batch, resolve_device, train_step


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", default="small", choices=["small", "paper"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--n-requests", type=int, default=TrainConfig.n_requests)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    amp = autocast_dtype(device)
    cfg = model_config(args.size)
    tcfg = TrainConfig(batch_size=args.batch_size, n_requests=args.n_requests)
    torch.manual_seed(args.seed)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    pool = 4 * args.batch_size
    x = torch.randn(pool, cfg.n_tokens, generator=gen, device=device)
    x = x.masked_fill(torch.rand(x.shape, generator=gen, device=device) < 0.1, float("nan"))
    e = torch.full_like(x, 0.05)
    model = StarModel(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    weight = tcfg.request_weight().to(device)
    sample_s = total_s = 0.0
    for step in range(args.warmup + args.steps):
        idx = torch.randint(0, pool, (args.batch_size,), generator=gen, device=device)
        _sync(device)
        t0 = time.perf_counter()
        batch = draw_batch(x[idx], e[idx], cfg, tcfg.n_requests, weight, gen)
        _sync(device)
        t1 = time.perf_counter()
        train_step(model, opt, scaler, batch, amp, tcfg.length_chunks)
        _sync(device)
        t2 = time.perf_counter()
        if step >= args.warmup:
            sample_s += t1 - t0
            total_s += t2 - t0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"size {args.size} ({n_params:,} parameters), device {device}"
          f"{f' autocast {amp}' if amp else ' fp32'}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, {args.steps} steps")
    print(f"stars/second: {args.batch_size * args.steps / total_s:.1f}")
    print(f"step: {1000 * total_s / args.steps:.1f} ms, context sampler share: {100 * sample_s / total_s:.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
