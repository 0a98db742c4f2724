"""Stage ``train``: fit the foundation model on the train split of ``dataset.h5`` (SPEC §3).

Settings: :class:`TrainConfig`, config.yaml ``train:`` plus the recipe it names
(``recipes.<train.recipe>``), chosen by :meth:`TrainConfig.from_config`. Why each (ours)
setting exists and what it measured: README "Training recipes".

Each epoch every training star gets a fresh random context (5-64 of its present tokens)
and ``n_requests`` requested tokens drawn among its present tokens (a request may or may
not be in the context, as in Leung & Bovy 2024 §5). Label tokens are up-weighted in the
request draw (``label_weight``), the pseudo-luminosity too (``luminosity_weight``, ours);
BP-RP and J-K are never requested (``never_request``), as in the paper, so that figure 18
can test colours never trained as outputs.

Spectra-in contexts (``spectra_context_fraction``, ours): a share of the stars each step
instead get colours, J-H, pseudo-luminosity, ln E(B-V) (colours offered with
``spectra_keep_other``, the other two with ``spectra_keep_l_ebv``) and XP coefficients by
increasing order (BP and RP interleaved) up to the context maximum (with probability
``spectra_full_length``, else the random 5-64 length), plus each label with probability
``spectra_keep_label``: what evaluation and the figures ask of the model (many low-order XP
coefficients + photometry -> labels), which uniform 5-64 draws almost never show it.

Labels-in contexts (``label_context_fraction``, ours): a further share of the stars get their
five labels and ln E(B-V) first, then random others (5-64 in all): the direction of the
extinction-curve figure (labels + E(B-V) -> spectra). The per-token tensors of these draws
are built beside ``sample_context`` in :mod:`starfm.model`.

The learning rate follows an optional linear warm-up (``warmup_epochs``) then the paper's
cosine warm restarts, stepped every batch (``schedule_step: batch``, fractional epochs) or
every epoch (the paper); gradients are clipped at ``grad_clip`` (0: none).

Validation loss is computed on a held-out slice of the TRAIN split (never the test split)
with a fixed draw of contexts and requests, so it is comparable from epoch to epoch.
Every epoch ends with an atomic checkpoint (model, optimiser, scheduler, grad scaler, RNG
states, loss log); a killed run restarts where it stopped. Randomness is derived from
(seed, epoch), so a resumed run reproduces an uninterrupted one exactly on CPU.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from starfm import tokens
from starfm.errors import StarfmInputError, require_rows
from starfm.tables import atomic_path
from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.dataset import read_dataset, training_records
from starfm.settings import add_settings_argument, parse_settings
from starfm.model import (LABEL_TOKENS, ModelConfig, StarModel, context_anchor, context_keep,
                          context_priority, gaussian_nll, model_config, request_weight,
                          sample_context, sample_requests)

log = logging.getLogger("starfm.train")

LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "seconds")


@dataclass(frozen=True)
class TrainConfig:
    """config.yaml ``train:`` plus the recipe it names (``recipes.<train.recipe>``); defaults =
    the schema's ``train:`` and ``recipes.cpu`` (the CPU recipe, ~4 min on 2 cores for the mock
    survey). Fields marked (ours) are not in the papers; see the module docstring."""

    SECTION = ("train", "recipes.cpu")
    recipe: str = "cpu"                     # name of the recipe the fields below come from
    model_size: str = "small"               # starfm.model.SIZES: small (CPU) | paper (SPEC §3)
    epochs: int = 20                        # paper 4096
    batch_size: int = 256                   # paper 1024
    lr: float = 3e-3                        # AdamW peak lr, at the start of each cosine cycle (paper 1e-4)
    weight_decay: float = 0.01              # AdamW's default
    t0_epochs: int = 512                    # cosine cycle; a run shorter than a cycle uses one cycle
    eta_min: float = 1e-10
    schedule_step: str = "batch"            # cosine schedule stepped every batch (ours) | epoch (paper)
    warmup_epochs: float = 1.0              # linear lr warm-up at the start of the run (ours)
    grad_clip: float = 1.0                  # max global gradient norm; 0 = none (ours)
    val_fraction: float = 0.1               # of the train split, held out for the validation loss
    n_requests: int = 12                    # requested tokens per star per step (ours)
    label_weight: float = 8.0               # request up-weighting of LABEL_TOKENS (ours)
    luminosity_weight: float = 8.0          # request up-weighting of the pseudo-luminosity (ours)
    never_request: tuple[str, ...] = ("bp_rp", "j_k")
    length_chunks: int = 4                  # stars of a step run in chunks of similar context length
    spectra_context_fraction: float = 0.5   # share of stars given a spectra-in context (ours)
    spectra_keep_label: float = 0.2         # ... in which each label is offered with this probability
    spectra_keep_other: float = 0.75        # ... and each colour (BP-RP, J-H, J-K) with this
    spectra_keep_l_ebv: float = 0.25        # ... and the pseudo-luminosity and ln E(B-V) with this
    spectra_full_length: float = 0.5        # ... filled to context_max with this probability, else 5-64
    label_context_fraction: float = 0.25    # share of stars given a labels-in context (ours)
    seed: int = 3                           # seed of initialisation and every draw
    device: str = "auto"                    # auto = CUDA with mixed precision when present, else CPU
    threads: int = 1                        # torch CPU threads (1: bit-reproducible CPU training)

    # run-level settings: where and how fast, not what is trained (kept out of the fingerprint)
    RUN_FIELDS = ("device", "threads")
    # the fields of config.yaml ``train:``; every other field comes from ``recipes.<recipe>``
    TRAIN_FIELDS = ("recipe", "seed", "device", "threads")

    @classmethod
    def from_config(cls, config: dict, **overrides) -> "TrainConfig":
        """The training settings of a whole config (config.yaml as a dict): ``train:`` plus the
        recipe it names, ``recipes.<train.recipe>`` (the schema's default recipe where the
        config has no ``recipes:``), then ``overrides``; validated against the schema."""
        train = {**config.get("train", {}), **{k: v for k, v in overrides.items()
                                               if k in cls.TRAIN_FIELDS}}
        name = train.get("recipe", cls.recipe)
        recipe = config.get("recipes", {}).get(name)
        if recipe is None:
            from starfm.settings import section_schema
            node = section_schema(f"recipes.{name}")
            if node is None:
                raise StarfmInputError(f"train.recipe: unknown recipe {name!r}")
            recipe = node.get("default", {})
        return parse_settings(cls, {**train, **recipe, **overrides, "recipe": name},
                              option=f"train (recipe {name})")

    def __post_init__(self):
        recipe_fields = [f.name for f in dataclasses.fields(self) if f.name not in self.TRAIN_FIELDS]
        if self.recipe != "cpu" and all(getattr(self, k) == getattr(type(self), k)
                                        for k in recipe_fields):
            # TrainConfig(recipe="paper") alone would train with the CPU recipe's values
            raise StarfmInputError(
                f"train: recipe '{self.recipe}' given with the CPU recipe's values; build it with "
                f"TrainConfig.from_config(config) (train: + recipes.{self.recipe})")
        if self.spectra_context_fraction + self.label_context_fraction > 1.0 + 1e-9:
            raise StarfmInputError(
                f"train recipe: spectra_context_fraction {self.spectra_context_fraction} + "
                f"label_context_fraction {self.label_context_fraction} exceed 1")

    def model_settings(self) -> dict:
        """The settings that define the trained model (everything but RUN_FIELDS)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RUN_FIELDS}

    def cycle_epochs(self) -> int:
        return max(1, min(self.t0_epochs, self.epochs))

    def sampling_tensors(self, device=None) -> dict[str, torch.Tensor]:
        """The sampler's per-token tensors of this recipe (:mod:`starfm.model`, beside
        ``sample_context``), on ``device``."""
        t = {"request_weight": request_weight(self.label_weight, self.luminosity_weight,
                                                self.never_request),
             "context_priority": context_priority(),
             "context_keep": context_keep(self.spectra_keep_other, self.spectra_keep_l_ebv,
                                          self.spectra_keep_label),
             "context_anchor": context_anchor()}
        return {k: v.to(device) for k, v in t.items()} if device is not None else t


# ---- data -----------------------------------------------------------------------------

def load_training_data(path: str | Path) -> dict:
    """Standardised train-split tensors and the standardisation (``starfm.dataset.read_dataset``
    checks the file; this adds what training needs of the train split)."""
    path = Path(path)
    ds = read_dataset(path)
    vocabulary, values, errors = ds.vocabulary, ds.values, ds.errors
    median, spread = ds.token_median, ds.token_mad_std
    train = ~ds.is_test
    require_rows(int(train.sum()), f"{path} (train split)")
    values, errors = values[train], errors[train]
    present = np.isfinite(values)
    if not present.any():
        raise StarfmInputError(f"{path}: every value of the train split is NaN")
    absent_targets = [t for t in ("mass", "ln_age") if not present[:, tokens.TOKEN_INDEX[t]].any()]
    if len(absent_targets) == 2:
        raise StarfmInputError(f"{path}: token(s) {absent_targets} are NaN for every training star")
    if absent_targets:  # library mode: no mass anywhere; the token is never asked (masked loss)
        log.warning("%s: token(s) %s are NaN for every training star: never a target", path,
                    absent_targets)
    bad = present.any(0) & ~(np.isfinite(median) & np.isfinite(spread) & (spread > 0))
    if bad.any():
        names = [vocabulary[i] for i in np.flatnonzero(bad)]
        raise StarfmInputError(f"{path}: token_median/token_mad_std not finite and positive "
                                  f"for present token(s) {names}")
    # tokens absent from the train split never enter the model; keep their scale harmless
    median = np.where(np.isfinite(median), median, 0.0)
    spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
    keep = present.any(1)                    # a star without any token teaches nothing
    if not keep.all():
        log.info("dropping %d training stars without any token", int((~keep).sum()))
    x = ((values[keep] - median) / spread).astype(np.float32)
    e = (np.nan_to_num(errors[keep]) / spread).astype(np.float32)
    return {"x": torch.from_numpy(x), "e": torch.from_numpy(e), "median": median,
            "mad_std": spread, "vocabulary": vocabulary, "records": training_records(ds)}


def _split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(round(fraction * n)))) if n > 1 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# ---- device and precision -------------------------------------------------------------

def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise StarfmInputError("train.device cuda: no CUDA device is available (use auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise StarfmInputError(f"train.device {device}: choose auto, cpu or cuda")
    return torch.device(device)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA when supported, else fp16 (with a grad scaler); None = fp32 (CPU)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# ---- one optimisation step (shared with benchmarks/train_throughput.py) ----------------

def draw_batch(x, e, cfg: ModelConfig, n_requests: int, request_weight, generator,
               context_priority=None, spectra_context_fraction: float = 0.0, context_keep=None,
               spectra_full_length: float = 1.0, context_anchor=None,
               label_context_fraction: float = 0.0):
    """Context and requests for a batch of standardised stars (vectorised, on x's device)."""
    present = torch.isfinite(x)
    ctx_token, ctx_pad = sample_context(present, cfg.context_min, cfg.context_max, generator,
                                        context_priority, spectra_context_fraction, context_keep,
                                        spectra_full_length, context_anchor, label_context_fraction)
    req_token, req_valid = sample_requests(present, n_requests, request_weight, generator)
    return {"ctx_token": ctx_token, "ctx_value": x.gather(1, ctx_token), "ctx_pad": ctx_pad,
            "req_token": req_token, "y": x.gather(1, req_token), "y_err": e.gather(1, req_token),
            "req_valid": req_valid}


def batch_loss(model: StarModel, batch: dict, amp_dtype: torch.dtype | None,
               length_chunks: int = 1) -> torch.Tensor:
    """Mean loss of a batch. With ``length_chunks`` > 1 the stars are sorted by context length
    and run in that many chunks, each cut to its own longest context: the same loss and
    gradient (padding is masked) for less work on padding."""
    device_type = batch["ctx_token"].device.type
    n_ctx = (~batch["ctx_pad"]).sum(1)
    chunks = torch.argsort(n_ctx, stable=True).tensor_split(length_chunks) if length_chunks > 1 else [None]
    means, log_vars, order = [], [], []
    with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        for idx in chunks:
            if idx is None:
                idx = torch.arange(len(n_ctx), device=n_ctx.device)
            if len(idx) == 0:
                continue
            length = int(n_ctx[idx].max().clamp(min=1))
            mean, log_var = model(batch["ctx_token"][idx, :length], batch["ctx_value"][idx, :length],
                                  batch["ctx_pad"][idx, :length], batch["req_token"][idx])
            means.append(mean)
            log_vars.append(log_var)
            order.append(idx)
    idx = torch.cat(order)
    return gaussian_nll(batch["y"][idx], torch.cat(means), torch.cat(log_vars), batch["y_err"][idx],
                        batch["req_valid"][idx])


def train_step(model, optimizer, scaler, batch, amp_dtype, length_chunks: int = 1,
               grad_clip: float = 0.0) -> float:
    model.train()
    loss = batch_loss(model, batch, amp_dtype, length_chunks)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


# ---- optimiser and schedule --------------------------------------------------------------

def make_optimizer(parameters, tcfg: TrainConfig):
    """AdamW and cosine annealing with warm restarts (T_0 = ``cycle_epochs``), as the paper."""
    optimizer = torch.optim.AdamW(parameters, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=tcfg.cycle_epochs(), eta_min=tcfg.eta_min)
    return optimizer, scheduler


def schedule_step(scheduler, optimizer, tcfg: TrainConfig, epoch: int, step: int, n_steps: int):
    """Set the learning rate of ``step`` of ``epoch``: the cosine schedule moves every step
    (fractional epochs, ``schedule_step: batch``) or, as the paper's CosineAnnealingWarmRestarts,
    once per epoch (``epoch``); a warm-up scales it."""
    if tcfg.schedule_step == "batch":
        scheduler.step(epoch + step / n_steps)
    elif step == 0:
        scheduler.step(epoch)
    if tcfg.warmup_epochs > 0:
        warm = min(1.0, (epoch + (step + 1) / n_steps) / tcfg.warmup_epochs)
        for group, base in zip(optimizer.param_groups, scheduler.get_last_lr()):
            group["lr"] = base * warm


def learning_rates(tcfg: TrainConfig, epochs, n_steps: int = 1) -> list[float]:
    """Learning rate of the first step of each of ``epochs`` under ``tcfg``'s schedule (the
    schedule training uses; for tests, plots and benchmarks)."""
    optimizer, scheduler = make_optimizer([torch.nn.Parameter(torch.zeros(1))], tcfg)
    out = []
    for epoch in epochs:
        schedule_step(scheduler, optimizer, tcfg, int(epoch), 0, n_steps)
        out.append(optimizer.param_groups[0]["lr"])
    return out


# ---- the stage ------------------------------------------------------------------------

def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + stream) % (2**63)


@torch.no_grad()
def _validation_loss(model, x, e, cfg, tcfg, request_weight, amp_dtype) -> float:
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(_epoch_seed(tcfg.seed, 0, 99))  # same draw every epoch
    total, count = 0.0, 0
    sampling = tcfg.sampling_tensors(x.device)
    for start in range(0, len(x), tcfg.batch_size):
        batch = draw_batch(x[start:start + tcfg.batch_size], e[start:start + tcfg.batch_size], cfg,
                           tcfg.n_requests, request_weight, gen, sampling["context_priority"],
                           tcfg.spectra_context_fraction, sampling["context_keep"],
                           tcfg.spectra_full_length, sampling["context_anchor"],
                           tcfg.label_context_fraction)
        n = int(batch["req_valid"].sum())
        total += float(batch_loss(model, batch, amp_dtype, tcfg.length_chunks)) * n
        count += n
    return total / max(count, 1)


def _write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)


def _save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def train(dataset: str | Path, out: str | Path, loss_log: str | Path,
          checkpoint: str | Path | None = None, size: str | ModelConfig | None = None,
          config: TrainConfig | None = None, device: str | None = None,
          max_epochs_this_run: int | None = None, progress: bool = True) -> dict:
    """Train on ``dataset`` (dataset.h5); write the model to ``out`` and the loss log to ``loss_log``.

    With ``checkpoint``, state is saved there after every epoch and a matching checkpoint
    is resumed. ``size`` (default ``config.model_size``) names an entry of
    ``starfm.model.SIZES`` (or is a ModelConfig); ``device`` defaults to ``config.device``.
    ``max_epochs_this_run`` stops after that many epochs of this call (the
    checkpoint then holds the state; ``out`` is written only when all epochs are done).
    Returns a summary dict (epochs done, final losses, whether finished).
    """
    tcfg = config or TrainConfig()
    size = tcfg.model_size if size is None else size
    mcfg = size if isinstance(size, ModelConfig) else model_config(size)
    size = size if isinstance(size, str) else "custom"
    dev = resolve_device(tcfg.device if device is None else device)
    amp_dtype = autocast_dtype(dev)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as the paper (TF32 matmuls)
    data = load_training_data(dataset)
    train_idx, val_idx = _split_validation(len(data["x"]), tcfg.val_fraction, tcfg.seed)
    x, e = data["x"].to(dev), data["e"].to(dev)
    x_tr, e_tr = x[train_idx], e[train_idx]
    x_val, e_val = x[val_idx], e[val_idx]
    sampling = tcfg.sampling_tensors(dev)
    request_weight, context_priority = sampling["request_weight"], sampling["context_priority"]
    context_keep, context_anchor = sampling["context_keep"], sampling["context_anchor"]
    log.info("training %s model on %d stars (validation %d) on %s%s", size, len(x_tr), len(x_val),
             dev, f" with {amp_dtype} autocast" if amp_dtype else " in fp32")

    torch.manual_seed(tcfg.seed)
    model = StarModel(mcfg).to(dev)
    optimizer, scheduler = make_optimizer(model.parameters(), tcfg)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    fingerprint = json.dumps({"model": mcfg.to_dict(), "train": tcfg.model_settings(),
                              "n_train": len(x_tr), "n_val": len(x_val),
                              "data_sum": float(torch.nan_to_num(data["x"]).double().sum())},
                             sort_keys=True)
    rows: list[dict] = []
    start_epoch = 0
    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint and checkpoint.exists():
        try:
            state = torch.load(checkpoint, map_location=dev, weights_only=True)
        except Exception as exc:  # a corrupt checkpoint is not worth dying for: start afresh
            log.warning("%s: unreadable checkpoint (%s); starting afresh", checkpoint, exc)
            state = None
        if state is not None and state.get("fingerprint") != fingerprint:
            log.warning("%s: checkpoint of a different run (data or settings); starting afresh",
                        checkpoint)
            state = None
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng_cpu"].cpu())
            if dev.type == "cuda" and len(state["rng_cuda"]):
                torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])
            rows, start_epoch = list(state["log"]), int(state["epoch"])
            log.info("resuming from %s after epoch %d", checkpoint, start_epoch)

    stop = tcfg.epochs if max_epochs_this_run is None else min(tcfg.epochs,
                                                              start_epoch + max_epochs_this_run)
    bar = tqdm(range(start_epoch, stop), desc="train", unit="epoch", disable=not progress,
               initial=start_epoch, total=tcfg.epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        torch.manual_seed(_epoch_seed(tcfg.seed, epoch, 1))           # dropout stream
        gen = torch.Generator(device=dev).manual_seed(_epoch_seed(tcfg.seed, epoch, 2))
        order = torch.randperm(len(x_tr), generator=gen, device=dev)
        n_steps = math.ceil(len(order) / tcfg.batch_size)
        lr = None
        total, count = 0.0, 0
        for step, start in enumerate(range(0, len(order), tcfg.batch_size)):
            schedule_step(scheduler, optimizer, tcfg, epoch, step, n_steps)
            lr = optimizer.param_groups[0]["lr"] if lr is None else lr
            idx = order[start:start + tcfg.batch_size]
            batch = draw_batch(x_tr[idx], e_tr[idx], mcfg, tcfg.n_requests, request_weight, gen,
                               context_priority, tcfg.spectra_context_fraction, context_keep,
                               tcfg.spectra_full_length, context_anchor, tcfg.label_context_fraction)
            n = int(batch["req_valid"].sum())
            loss = train_step(model, optimizer, scaler, batch, amp_dtype, tcfg.length_chunks,
                              tcfg.grad_clip)
            if not math.isfinite(loss):
                if scaler.is_enabled():      # fp16 overflow: the scaler skipped this step
                    log.warning("non-finite fp16 loss at epoch %d; step skipped", epoch + 1)
                    continue
                raise FloatingPointError(f"non-finite training loss at epoch {epoch + 1}")
            total += loss * n
            count += n
        val_loss = _validation_loss(model, x_val, e_val, mcfg, tcfg, request_weight, amp_dtype) \
            if len(x_val) else float("nan")
        row = {"epoch": epoch + 1, "train_loss": total / max(count, 1), "val_loss": val_loss,
               "lr": lr, "seconds": time.perf_counter() - t0}
        rows.append(row)
        bar.set_postfix(train=f"{row['train_loss']:.4f}", val=f"{val_loss:.4f}")
        log.info("epoch %d/%d train %.4f val %.4f lr %.3g (%.1f s)", epoch + 1, tcfg.epochs,
                 row["train_loss"], val_loss, lr, row["seconds"])
        _write_log(Path(loss_log), rows)
        if checkpoint:
            _save({"fingerprint": fingerprint, "epoch": epoch + 1, "model": model.state_dict(),
                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                   "scaler": scaler.state_dict(), "rng_cpu": torch.get_rng_state(),
                   "rng_cuda": torch.cuda.get_rng_state_all() if dev.type == "cuda" else [],
                   "log": rows}, checkpoint)
    bar.close()

    done = len(rows) >= tcfg.epochs
    if rows:
        _write_log(Path(loss_log), rows)
    if done:
        _save({"format": "starfm-model-1",
               "model_config": mcfg.to_dict(), "size": size,
               "state_dict": {k: v.detach().float().cpu() for k, v in model.state_dict().items()},
               "vocabulary": list(data["vocabulary"]),
               "token_median": torch.tensor(data["median"]),
               "token_mad_std": torch.tensor(data["mad_std"]),
               "train_config": json.dumps(tcfg.model_settings()),
               "training": json.dumps(data["records"]),   # what it was trained on (predict)
               "history": rows}, Path(out))
        log.info("wrote %s", out)
    return {"epochs_done": len(rows), "finished": done,
            "train_loss": rows[-1]["train_loss"] if rows else float("nan"),
            "val_loss": rows[-1]["val_loss"] if rows else float("nan"), "history": rows}


@run_cli
def cli(argv=None) -> int:
    p = stage_parser("train", "Train the transformer foundation model on the train split of "
                     "dataset.h5 (SPEC §3). Resumes from --checkpoint when it matches the run.")
    p.add_argument("--dataset", required=True, help="dataset.h5 written by the assemble stage")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (written every epoch; resumed)")
    p.add_argument("--max-epochs-this-run", type=int, default=None,
                   help="stop after this many epochs of this call (resume later from --checkpoint)")
    p.add_argument("--loss-log", required=True, help="CSV: epoch, train_loss, val_loss, lr, seconds")
    p.add_argument("--out", required=True, help="trained model file (model.pt)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_settings_argument(p, TrainConfig)
    args = p.parse_args(argv)
    setup_logging(args.log, args.verbose)
    cfg = parse_settings(TrainConfig, args.settings)
    torch.set_num_threads(cfg.threads)
    train(args.dataset, args.out, args.loss_log, args.checkpoint, config=cfg,
          max_epochs_this_run=args.max_epochs_this_run, progress=not args.no_progress)
    return 0
