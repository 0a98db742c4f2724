"""How much the mock looks like the sky: the measurements of issue 18, and a data-driven forward model.

Reusable pieces of ``benchmarks/mock_vs_sky.py`` (numbers there and in its JSON):

- :func:`check_half`: the fixed split of a population into a *fit* half and a *check* half by
  ``source_id`` (a hash rule, no stored list): the forward model is fitted on the fit half only,
  every measurement is made on the check half;
- :func:`binned_median_offsets`: measurement (1), the per-coefficient difference of the medians
  of two populations in (Teff, logg, [M/H]) bins, in population standard deviations;
- :func:`xgb_fit_predict`: measurements (2)-(3), XGBoost with the baseline stage's parameters;
- :class:`ForwardModel` (:func:`fit_forward_model`, :meth:`ForwardModel.sample`): a per-token
  polynomial (ridge) regression of the G-normalised XP coefficients and colours on Teff, logg,
  [M/H], [alpha/M] plus a term linear in E(B-V) (whose slope is itself linear in the labels),
  with the fit's residual covariance as correlated Gaussian noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from starfm.mock.sky_model import design_matrix, poly_features  # noqa: F401  (poly_features: re-exported)

# ---- the split ---------------------------------------------------------------------------------
SPLIT_SEED = 18          # issue 18; changing it changes which stars are held out
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele et al. 2014): a bijective, well-mixing uint64 hash."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return z ^ (z >> np.uint64(31))


def check_half(source_id, seed: int = SPLIT_SEED) -> np.ndarray:
    """True for the *check* half, False for the *fit* half: the top bit of
    splitmix64(source_id XOR splitmix64(seed)). A star's half depends on its source_id (and the
    seed) only: the same in every run, every population and every subset of it."""
    sid = np.asarray(source_id).astype(np.int64).view(np.uint64)
    key = _splitmix64(np.array([seed], dtype=np.uint64))[0]
    return (_splitmix64(sid ^ key) >> np.uint64(63)).astype(bool)


# ---- measurement (1) ---------------------------------------------------------------------------
def bin_index(labels: np.ndarray, edges: tuple[np.ndarray, ...]) -> np.ndarray:
    """Flat bin number of each row of ``labels`` (n, d) on the grid ``edges`` (d arrays); -1 for
    a row outside the grid or with a NaN label."""
    labels = np.asarray(labels, float)
    shape = tuple(len(e) - 1 for e in edges)
    idx = []
    ok = np.ones(len(labels), bool)
    for j, e in enumerate(edges):
        k = np.searchsorted(e, labels[:, j], side="right") - 1
        ok &= (k >= 0) & (k < len(e) - 1) & np.isfinite(labels[:, j])
        idx.append(np.clip(k, 0, len(e) - 2))
    flat = np.ravel_multi_index(tuple(idx), shape)
    return np.where(ok, flat, -1)


def binned_median_offsets(labels_a, x_a, labels_b, x_b, sigma, edges, min_count: int) -> dict:
    """(median of ``x_a`` - median of ``x_b``) / ``sigma`` per column in every bin of ``edges``
    where both populations have at least ``min_count`` stars; a column with fewer than
    ``min_count`` present (finite) values in either population is NaN in that bin.

    Returns ``{"offset": (n_bins_used, m), "bins": [[lo, hi] per label] per bin, "n_a", "n_b"}``.
    The loop is over bins (tens), not stars.
    """
    x_a, x_b = np.asarray(x_a, float), np.asarray(x_b, float)
    sigma = np.asarray(sigma, float)
    ia, ib = bin_index(labels_a, edges), bin_index(labels_b, edges)
    na = np.bincount(ia[ia >= 0], minlength=np.prod([len(e) - 1 for e in edges]))
    nb = np.bincount(ib[ib >= 0], minlength=len(na))
    used = np.flatnonzero((na >= min_count) & (nb >= min_count))
    shape = tuple(len(e) - 1 for e in edges)
    offsets, bins = [], []
    for b in used:
        xa, xb = x_a[ia == b], x_b[ib == b]
        enough = (np.isfinite(xa).sum(0) >= min_count) & (np.isfinite(xb).sum(0) >= min_count)
        with np.errstate(invalid="ignore"), _quiet():
            d = (np.nanmedian(xa, 0) - np.nanmedian(xb, 0)) / sigma
        offsets.append(np.where(enough, d, np.nan))
        k = np.unravel_index(b, shape)
        bins.append([[float(edges[j][k[j]]), float(edges[j][k[j] + 1])] for j in range(len(edges))])
    m = x_a.shape[1]
    return {"offset": np.array(offsets).reshape(len(used), m), "bins": bins,
            "n_a": na[used].astype(int).tolist(), "n_b": nb[used].astype(int).tolist()}


class _quiet:
    """Silence 'All-NaN slice' warnings of nanmedian (those columns are masked anyway)."""
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


# ---- measurements (2)-(3) ----------------------------------------------------------------------
def xgb_fit_predict(x_train, y_train, x_tests: list, seed: int, n_estimators: int = 300,
                    threads: int = 1) -> list[np.ndarray]:
    """One XGBoost regressor with the baseline stage's parameters (``starfm.baseline.XGB_PARAMS``;
    at most ``n_estimators`` trees: 300 here, the measurement's reference, the stage's 2,000;
    early stopping on a seeded ``VALIDATION_FRACTION`` of the train rows, patience
    ``EARLY_STOPPING_ROUNDS``), on rows with a finite target; predictions for each of ``x_tests``.
    NaN inputs are absent (XGBoost's default branch)."""
    import xgboost as xgb
    from starfm.baseline import VALIDATION_FRACTION, XGB_PARAMS, fit_booster
    x_train = np.asarray(x_train, np.float32)
    y_train = np.asarray(y_train, float)
    rows = np.flatnonzero(np.isfinite(y_train))
    rng = np.random.default_rng(seed)
    held = rng.random(len(rows)) < VALIDATION_FRACTION
    params = {**XGB_PARAMS, "seed": seed, "nthread": threads}
    fit, valid = rows[~held], rows[held]
    booster, best, _ = fit_booster(xgb, x_train[fit], y_train[fit], x_train[valid], y_train[valid],
                                   params, n_estimators)
    return [booster.predict(xgb.DMatrix(np.asarray(x, np.float32), missing=np.nan),
                            iteration_range=(0, best + 1)) for x in x_tests]


# ---- the forward model -------------------------------------------------------------------------
@dataclass
class ForwardModel:
    """token values (n, m) = features(labels, E(B-V)) @ coef + noise from the fit's residuals."""
    names: list[str]           # the modelled tokens, columns of ``coef``
    label_mean: np.ndarray     # (d,) standardisation of the labels
    label_scale: np.ndarray
    degree: int
    coef: np.ndarray           # (p, m)
    resid_cov: np.ndarray      # (m, m), positive semi-definite
    resid_scatter: np.ndarray  # (m,) robust (1.4826 MAD) scatter of the fit residuals
    n_fit: np.ndarray          # (m,) stars each column was fitted on
    resid: np.ndarray | None = None     # (k, m) the fit stars' residuals (NaN: absent/clipped),
    resid_g: np.ndarray | None = None   # (k,) their G, sorted: donors for :meth:`sample`
    resid_z: np.ndarray | None = None   # the fit stars' standardised labels and their
    resid_by_z: np.ndarray | None = None  # residuals in that order: donors by labels
    local_k: int = 0                    # >0: + mean polynomial residual of the local_k fit stars
    local_z: np.ndarray | None = None   # nearest in standardised labels (local_z, local_resid)
    local_resid: np.ndarray | None = None
    ebv_terms: tuple = ((1, 1), (2, 0))  # (p, d): E(B-V)^p x every monomial of the labels up to degree d

    def features(self, labels, ebv) -> np.ndarray:
        z = (np.asarray(labels, float) - self.label_mean) / self.label_scale
        return design_matrix(z, ebv, self.degree, self.ebv_terms)

    def poly_mean(self, labels, ebv) -> np.ndarray:
        return self.features(labels, ebv) @ self.coef

    def local_correction(self, labels) -> np.ndarray:
        """Mean polynomial residual (per column, over present values) of the ``local_k`` fit
        stars nearest in standardised labels; a fit star queried with its own labels (distance
        0) is left out of its own neighbours."""
        from scipy.spatial import cKDTree
        z = (np.asarray(labels, float) - self.label_mean) / self.label_scale
        dist, idx = cKDTree(self.local_z).query(z, k=self.local_k + 1)
        self_hit = dist[:, 0] == 0.0
        idx = np.where(self_hit[:, None], idx[:, 1:], idx[:, :-1])
        with _quiet():
            return np.nan_to_num(np.nanmean(self.local_resid[idx], axis=1))

    def mean(self, labels, ebv) -> np.ndarray:
        out = self.poly_mean(labels, ebv)
        if self.local_k:
            out = out + self.local_correction(labels)
        return out

    def sample(self, labels, ebv, present, seed: int, g=None, window: int = 50,
               donors_by: str = "g") -> np.ndarray:
        """Noisy token values for stars with ``labels`` and ``ebv``; NaN where ``present`` (n, m)
        is False (the real stars' pattern of absent coefficients is copied).

        Noise: with ``g`` (the stars' G) and stored donor residuals, each star gets the whole
        residual vector of a random fit star among the ``window`` nearest to it in G, never the
        one at its own position (so a fit star is not given back its own spectrum; so the
        noise keeps its correlations, tails and growth with magnitude); entries the donor lacks
        (absent or clipped), and every entry without ``g``, are drawn from N(0, resid_cov).
        ``donors_by="labels"``: the donor is instead a random one of the ``window`` fit stars
        nearest in standardised labels (never the star itself), so the residual keeps what the
        mean misses at those labels (needs ``g`` only to switch donors on)."""
        rng = np.random.default_rng(seed)
        w, v = np.linalg.eigh(self.resid_cov)
        root = v * np.sqrt(np.clip(w, 0, None))
        noise = rng.standard_normal((len(labels), len(w))) @ root.T
        if g is not None and donors_by == "labels" and self.resid_z is not None:
            from scipy.spatial import cKDTree
            z = (np.asarray(labels, float) - self.label_mean) / self.label_scale
            dist, idx = cKDTree(self.resid_z).query(z, k=window + 1)
            idx = np.where((dist[:, 0] == 0.0)[:, None], idx[:, 1:], idx[:, :-1])
            donor = self.resid_by_z[idx[np.arange(len(z)), rng.integers(0, window, len(z))]]
            noise = np.where(np.isfinite(donor), donor, noise)
        elif g is not None and self.resid is not None and len(self.resid_g):
            g = np.nan_to_num(np.asarray(g, float), nan=float(np.median(self.resid_g)))
            k = len(self.resid_g)
            # offset 1..window/2 either side, never 0: a fit star itself (its G is at its own
            # sorted position) never gets back its own residual, i.e. its real spectrum
            at = np.searchsorted(self.resid_g, g)
            off = rng.integers(1, window // 2 + 1, len(g)) * rng.choice([-1, 1], len(g))
            pos = np.where((at + off >= 0) & (at + off < k), at + off, at - off)
            donor = self.resid[np.clip(pos, 0, k - 1)]
            noise = np.where(np.isfinite(donor), donor, noise)
        out = self.mean(labels, ebv) + noise
        return np.where(present, out, np.nan)


def pairwise_covariance(resid: np.ndarray) -> np.ndarray:
    """Covariance (m, m) of the columns of ``resid`` (n, m) over the rows where both are finite,
    made positive semi-definite (negative eigenvalues set to 0)."""
    pres = np.isfinite(resid)
    r0 = np.where(pres, resid, 0.0)
    npair = pres.T.astype(float) @ pres.astype(float)
    mean = r0.sum(0) / np.maximum(pres.sum(0), 1)
    rc = np.where(pres, resid - mean, 0.0)
    cov = (rc.T @ rc) / np.maximum(npair - 1, 1)
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    return (v * np.clip(w, 0, None)) @ v.T


def fit_forward_model(labels, ebv, y, names, degree: int = 4, ridge: float = 1e-5,
                      clip: float = 5.0, g=None, local_k: int = 0,
                      ebv_terms: tuple = ((1, 1), (2, 0))) -> ForwardModel:
    """Fit :class:`ForwardModel` column by column (a loop over the m tokens, not the stars) on
    the rows where that column and every label are finite: ridge least squares (``ridge`` times
    the mean diagonal of the normal matrix, not on the constant), refitted once without the rows
    whose residual exceeds ``clip`` robust sigma. Absent E(B-V) counts as 0.

    The noise: the covariance of the clipped residuals over the pairs of stars where both
    columns are present, made positive semi-definite (negative eigenvalues set to 0); with
    ``g`` (the fit stars' G) the residual vectors are also kept as donors (sorted by G).

    ``ebv_terms``: the E(B-V) dependence, (p, d) pairs: E(B-V)^p times the label monomials up to
    degree d (default: linear in E(B-V) with a slope linear in the labels, plus E(B-V)^2).

    ``local_k`` > 0: a local correction, the mean residual of the ``local_k`` fit stars nearest in
    standardised labels (a k-nearest-neighbour smoother of what the polynomial misses; extinction
    stays in the polynomial part); the noise is then taken from the residuals left after it
    (each fit star's correction computed without itself)."""
    labels, y = np.asarray(labels, float), np.asarray(y, float)
    ok_lab = np.isfinite(labels).all(1)
    mu = np.nanmean(labels[ok_lab], 0)
    sc = np.nanstd(labels[ok_lab], 0)
    model = ForwardModel(list(names), mu, sc, degree, np.empty(0), np.empty(0), np.empty(0),
                         np.empty(0), ebv_terms=tuple(tuple(int(v) for v in t) for t in ebv_terms))
    X = model.features(np.where(ok_lab[:, None], labels, mu), ebv)
    p, m = X.shape[1], y.shape[1]
    coef = np.zeros((p, m))
    resid = np.full(y.shape, np.nan)
    n_fit = np.zeros(m, int)
    reg = np.eye(p)
    reg[0, 0] = 0.0
    for j in range(m):
        rows = ok_lab & np.isfinite(y[:, j])
        if rows.sum() <= p:
            continue
        for _ in range(2):
            A = X[rows].T @ X[rows]
            c = np.linalg.solve(A + ridge * np.trace(A) / p * reg, X[rows].T @ y[rows, j])
            r = y[:, j] - X @ c
            s = 1.4826 * np.median(np.abs(r[rows] - np.median(r[rows])))
            rows = rows & (np.abs(r) <= clip * s)
        coef[:, j] = c
        resid[rows, j] = r[rows]
        n_fit[j] = int(rows.sum())
    if local_k:
        model.local_k = int(local_k)
        model.local_z = (labels[ok_lab] - mu) / sc
        model.local_resid = resid[ok_lab]
        resid[ok_lab] = resid[ok_lab] - model.local_correction(labels[ok_lab])
    pres = np.isfinite(resid)
    cov = pairwise_covariance(resid)
    scatter = np.array([1.4826 * np.nanmedian(np.abs(resid[:, j] - np.nanmedian(resid[:, j])))
                        if pres[:, j].any() else np.nan for j in range(m)])
    model.coef, model.resid_cov, model.resid_scatter, model.n_fit = coef, cov, scatter, n_fit
    if g is not None:
        g = np.asarray(g, float)
        keep = ok_lab & np.isfinite(g)
        order = np.argsort(g[keep], kind="stable")
        model.resid, model.resid_g = resid[keep][order], g[keep][order]
    model.resid_z, model.resid_by_z = (labels[ok_lab] - mu) / sc, resid[ok_lab]
    return model
