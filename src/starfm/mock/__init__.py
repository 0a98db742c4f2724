"""The mock survey: a seeded APOGEE x Gaia red-giant survey in the exact formats of the real data.

One job per module; :mod:`starfm.mock.survey` (the ``mock-survey`` stage) orchestrates them and
writes the files:

- :mod:`~starfm.mock.dust_map`: the synthetic 3-D dust map (mwdust's Combined19 format);
- :mod:`~starfm.mock.sky_model` (``mock.model: sky``, the default): the population, extinction-free
  XP spectra and colours, H, S/N and ASPCAP errors learned from the fit half of the real library
  (``data/sky_model.npz``), with :mod:`~starfm.mock.sky_population` (label mixture, attached
  state/mass/age/[C/N], label errors) and :mod:`~starfm.mock.sky_match` (the split, the forward
  model, the measurements of ``benchmarks/mock_vs_sky.py``);
- :mod:`~starfm.mock.population`: plates, stars (mass, age, [M/H], Teff, logg, L, R; the
  parametric population of ``mock.model: physical``) and the H-magnitude selection that sets
  their distances;
- :mod:`~starfm.mock.photometry`: 2MASS J, H, K;
- :mod:`~starfm.mock.spectra`: model spectra (``physical``; the flux scale and [C/N] bands of
  ``sky``), the projection on Gaia's XP basis, the injected extinction law;
- :mod:`~starfm.mock.gaia_source`: ``gaia_source`` rows (ids, astrometry, parallax zero point);
- :mod:`~starfm.mock.xp_continuous`: archive XP rows (noisy coefficients and their errors);
- :mod:`~starfm.mock.apogee`: allStar and DistMass rows (labels, flags, duplicates);
- :mod:`~starfm.mock.truth`: the true parameters of every allStar row;
- :mod:`~starfm.mock.archive`: the mock Gaia archive that serves the written store.

Nothing after the data sources imports this package (tests/test_workflow_static.py): mock and
real runs share every later stage.
"""
