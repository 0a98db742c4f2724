"""End-to-end ``starfm predict`` throughput next to the raw model forward pass on the same stars.

    python benchmarks/predict.py --size small --n-stars 20000 --format h5 --device cpu
    python benchmarks/predict.py --size paper --n-stars 5000

End to end = ``starfm.predict.predict``: read the XP file in chunks (any format), join a
gaia_source table, tokenise (``starfm.tokenise``), build contexts, run the model, write the
catalogue (HDF5). Forward = ``StarModel.forward`` alone on the same stars' contexts, batch by batch
(contexts built beforehand, untimed). The ratio end-to-end / forward (stars/s) is what the I/O
costs: the goal is >= 0.7. Random weights (throughput only); the XP rows are the 2,000 real Gaia
DR3 stars of ``../shared/realdata/xp/xp_spectral_lines`` repeated with new source_ids.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from starfm import tokens
from starfm.predict import default_inputs

INPUTS = default_inputs()
from starfm.catalogue_io import CatalogueWriter, iter_xp_chunks
from starfm.inference import MODEL_FORMAT, StarFM
from starfm.tables import write_table
from starfm.model import StarModel, model_config
from starfm.predict import OUTPUTS, PredictSettings, SideTable, predict, token_columns
from starfm.tokenise import CutSettings, tokenise

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata" / "xp" / "xp_spectral_lines" / "xp_continuous_combined_chunk0.fits"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def write_inputs(directory: Path, n: int, fmt: str, seed: int = 0) -> tuple[Path, Path]:
    """An XP file of ``n`` stars (real coefficients, repeated) and a matching gaia_source table."""
    xp, _ = next(iter_xp_chunks(REAL, 10**6))
    reps = np.arange(n) % len(xp["source_id"])
    cols = {k: v[reps] for k, v in xp.items()}
    cols["source_id"] = 10**15 + np.arange(n, dtype=np.int64) * 7
    rng = np.random.default_rng(seed)
    path = directory / f"xp.{fmt}"
    if fmt == "h5":
        write_table(path, cols)
    else:
        from astropy.table import Table
        t = Table({k: v for k, v in cols.items()})
        if fmt == "csv":   # archive CSV: arrays as "(v1, v2, ...)" text cells
            for k in [c for c in t.colnames if t[c].ndim == 2]:
                t[k] = ["(" + ", ".join(f"{x:.17g}" for x in row) + ")" for row in cols[k]]
        t.write(path, overwrite=True)
    from starfm.predict import synthetic_photometry
    g = synthetic_photometry(cols["bp_coefficients"], cols["rp_coefficients"])
    gaia = {"source_id": cols["source_id"], "phot_g_mean_mag": np.nan_to_num(g[:, 0], nan=20.0),
            "bp_rp": np.nan_to_num(g[:, 1] - g[:, 2], nan=1.0), "phot_bp_rp_excess_factor": np.full(n, 1.2),
            "ruwe": np.full(n, 1.0), "parallax": rng.uniform(0.2, 2.0, n), "parallax_error": np.full(n, 0.02),
            "parallax_corrected": rng.uniform(0.2, 2.0, n)}
    write_table(directory / "gaia_source.h5", gaia)
    return path, directory / "gaia_source.h5"


def random_model(path: Path, size: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    cfg = model_config(size)
    model = StarModel(cfg)
    torch.save({"format": MODEL_FORMAT, "model_config": cfg.to_dict(), "size": size,
                "state_dict": {k: v.detach().float() for k, v in model.state_dict().items()},
                "vocabulary": list(tokens.VOCABULARY),
                "token_median": torch.zeros(len(tokens.VOCABULARY), dtype=torch.float64),
                "token_mad_std": torch.ones(len(tokens.VOCABULARY), dtype=torch.float64)}, path)
    return path


@torch.no_grad()
def forward_only(fm: StarFM, values: np.ndarray, inputs, batch_size: int) -> float:
    """Seconds of the model forward passes alone over ``values`` (contexts prepared beforehand)."""
    in_idx = fm._indices(inputs, "input")
    req = torch.as_tensor(fm._indices(list(OUTPUTS.values()), "output"), device=fm.device)
    batches = []
    for start in range(0, len(values), batch_size):
        token, value, pad = fm._context(values[start:start + batch_size], in_idx)
        batches.append((torch.as_tensor(token, device=fm.device),
                        torch.as_tensor(value, dtype=torch.float32, device=fm.device),
                        torch.as_tensor(pad, device=fm.device)))
    fm.model(*batches[0], req.expand(len(batches[0][0]), -1))   # warm-up
    _sync(fm.device)
    t0 = time.perf_counter()
    for token, value, pad in batches:
        mu, log_var = fm.model(token, value, pad, req.expand(len(token), -1))
        mu.double().cpu(), log_var.double().cpu()
    _sync(fm.device)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", default="small", choices=["small", "paper"])
    p.add_argument("--n-stars", type=int, default=20000)
    p.add_argument("--format", default="h5", choices=["h5", "fits", "csv"], help="XP input format")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--batch-size", type=int, default=PredictSettings.batch_size)
    p.add_argument("--chunk-rows", type=int, default=PredictSettings.chunk_rows)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=2, help="best of this many timings each")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    if device == "auto":
        device = "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        xp_path, gaia_path = write_inputs(tmp, args.n_stars, args.format)
        model_path = random_model(tmp / "model.pt", args.size)
        fm = StarFM.load(model_path, device=device)
        settings = PredictSettings(chunk_rows=args.chunk_rows, batch_size=args.batch_size,
                                   device=device, progress=False)
        # the same stars' tokens (for the forward pass alone), read and tokenised as predict does
        gaia = SideTable(gaia_path, "gaia_source", {c: (c,) for c in
                                                    ("phot_g_mean_mag", "bp_rp", "phot_bp_rp_excess_factor",
                                                     "ruwe", "parallax", "parallax_error", "parallax_corrected")})
        parts = []
        t_read = time.perf_counter()
        for xp, extra in iter_xp_chunks(xp_path, args.chunk_rows):
            cols, _, _ = token_columns(xp, extra, gaia, None, settings)
            parts.append(tokenise(cols, CutSettings(), missing_quality="pass")[0])
        read_tokenise = time.perf_counter() - t_read
        values = np.concatenate(parts)
        # alternate end to end and forward alone, best of --repeats each (the machine is shared);
        # the model is loaded once and warmed up, process start-up is not counted
        forward_only(fm, values[:args.batch_size], INPUTS, args.batch_size)
        e2e = fwd = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            counts = predict(model_path, xp_path, tmp / "out.h5", gaia_source=gaia_path,
                             settings=settings, fm=fm)
            e2e = min(e2e, time.perf_counter() - t0)
            fwd = min(fwd, forward_only(fm, values, INPUTS, args.batch_size))
        t_api = time.perf_counter()
        fm.predict(values, inputs=INPUTS, outputs=list(OUTPUTS.values()),
                   batch_size=args.batch_size)
        api = time.perf_counter() - t_api
        t_w = time.perf_counter()
        with CatalogueWriter(tmp / "w.h5") as w:
            w.write({"source_id": np.arange(len(values)), **{f"c{i}": values[:, i] for i in range(26)}})
        write_s = time.perf_counter() - t_w
    n = counts["rows"]
    result = {"size": args.size, "device": device, "format": args.format, "n_stars": n,
              "threads": torch.get_num_threads(), "batch_size": args.batch_size,
              "end_to_end_stars_per_s": n / e2e, "forward_stars_per_s": n / fwd,
              "starfm_predict_stars_per_s": n / api,
              "read_and_tokenise_stars_per_s": n / read_tokenise, "write_stars_per_s": n / write_s,
              "ratio_end_to_end_over_forward": fwd / e2e}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
