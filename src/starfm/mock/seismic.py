"""The real asteroseismic samples the mock is calibrated on, read from ``../shared/realdata``:
APOKASC-3 (gold, alpha-poor RGB + RC) and Miglio et al. (2021), in the mock truth's column names.
Read by :mod:`starfm.mock.realism` (the realism checks) and :mod:`starfm.mock.sky_population`
(the relations the sky mock attaches mass, state and age by)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

APOKASC3 = "labels/mesa_apokasc/Table4_Apoor_RGB+RC_Gold.csv"
MIGLIO2021 = "labels/xgboost_chem_ages/kepler_apogee_miglio2021.fit"


def real_samples(realdata_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{"apokasc3": ..., "miglio2021": ...}``: the real samples in the mock truth's column names."""
    import pandas as pd
    from astropy.table import Table

    root = Path(realdata_dir)
    a = pd.read_csv(root / APOKASC3)
    apokasc = {"mass": a["Mass"].to_numpy(float), "teff": a["Teff"].to_numpy(float),
               "logg": a["Logg_Seis"].to_numpy(float), "m_h": a["[Fe/H]"].to_numpy(float),
               "alpha_m": a["[Alp/Fe]"].to_numpy(float), "c_n": a["[C/N]"].to_numpy(float),
               "is_red_clump": (a["Evol_State"] == "RC").to_numpy()}
    m = Table.read(root / MIGLIO2021)
    age = np.asarray(m["Age"], dtype=float)
    ok = np.isfinite(age) & (age > 0)
    miglio = {"mass": np.asarray(m["Mass"], float)[ok], "age_gyr": age[ok],
              "m_h": np.asarray(m["__Fe_H_"], float)[ok], "alpha_m": np.asarray(m["__alpha_M_"], float)[ok],
              "is_red_clump": (np.asarray(m["evstate"]) == 2)[ok]}
    return {"apokasc3": apokasc, "miglio2021": miglio}
