"""The real Gaia archive through astroquery, and the archive interface every source implements.

:class:`GaiaArchive` (the protocol the gaia-source / gaia-xp stages call):

* ``query_gaia_source(source_ids) -> Table``: the ``gaiadr3.gaia_source`` columns starfm uses;
* ``load_xp_continuous(source_ids) -> {file name: [table, ...]}``: exactly what
  ``astroquery.gaia.Gaia.load_data(ids, retrieval_type='XP_CONTINUOUS', data_structure='RAW',
  format=...)`` returns (VOTable ``TableElement``s for ``.xml``, ``Table``s otherwise).

:class:`AstroqueryGaiaArchive` is the real archive; the mock survey's archive is
:class:`starfm.mock.archive.MockGaiaArchive`, which serves its store in the archive's formats
(:mod:`starfm.archive_formats`), so one parser (:func:`starfm.xp_tables.parse_xp_tables`) serves
mock and real runs. Errors are split into :class:`TransientArchiveError` (retry: time-outs,
resets, HTTP 5xx/429) and :class:`PermanentArchiveError` (anything else).
"""
from __future__ import annotations

import contextlib
import http
import http.client
import re
import socket
import zipfile
from typing import Protocol, Sequence

import numpy as np
from astropy.table import Table

from starfm.errors import StarfmInputError
from starfm.xp_tables import GAIA_SOURCE_COLUMNS

MAX_IDS_PER_CALL = 5000  # the archive's DataLink limit
# load_data formats astroquery parses (it returns unparsed, already deleted paths for .ecsv)
REAL_XP_FORMATS = ("votable", "votable_plain", "fits", "csv")


class ArchiveError(RuntimeError):
    """A Gaia archive call failed."""


class TransientArchiveError(ArchiveError):
    """Worth retrying: time-out, dropped connection, HTTP 5xx / 429, truncated download."""


class PermanentArchiveError(ArchiveError):
    """Retrying will not help (bad query, HTTP 4xx, unreadable answer)."""


class GaiaArchive(Protocol):
    def query_gaia_source(self, source_ids: Sequence[int]) -> Table: ...

    def load_xp_continuous(self, source_ids: Sequence[int]) -> dict[str, list]: ...



# ----------------------------------------------------------------------------- real archive
_TRANSIENT_STATUS = {s.value for s in http.HTTPStatus if s.value >= 500} | {429, 408}
_TRANSIENT_PHRASES = {http.HTTPStatus(s).phrase.lower() for s in _TRANSIENT_STATUS}


def classify_archive_error(exc: BaseException) -> ArchiveError:
    """Map an exception from astroquery / requests / http.client to transient or permanent."""
    if isinstance(exc, ArchiveError):
        return exc
    import requests

    msg = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, requests.exceptions.HTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status is None:  # astroquery's TapPlus raises HTTPError("Error 503: ...") or the reason
            m = re.search(r"\b(\d{3})\b", str(exc))
            status = int(m.group(1)) if m else None
        if status in _TRANSIENT_STATUS or str(exc).strip().lower() in _TRANSIENT_PHRASES:
            return TransientArchiveError(msg)
        return PermanentArchiveError(msg)
    transient = (requests.exceptions.Timeout, requests.exceptions.ConnectionError,
                 requests.exceptions.ChunkedEncodingError, socket.timeout, TimeoutError,
                 ConnectionError, http.client.IncompleteRead, http.client.RemoteDisconnected,
                 zipfile.BadZipFile, EOFError)
    if isinstance(exc, transient):
        return TransientArchiveError(msg)
    return PermanentArchiveError(msg)


@contextlib.contextmanager
def _socket_timeout(seconds: float | None):
    """astroquery's TapPlus opens http.client connections without a time-out: set the default."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


class AstroqueryGaiaArchive:
    """The real Gaia archive through ``astroquery.gaia.Gaia``.

    gaia_source: an asynchronous ADQL job joining ``gaiadr3.gaia_source`` with an uploaded table
    of the batch's ids (``tap_upload.starfm_ids``). An upload keeps the query short and the
    join on the primary key indexed, where ``WHERE source_id IN (...)`` with 5,000 ids makes a
    ~100 kB query string that TAP services may refuse. XP: ``Gaia.load_data(...,
    retrieval_type='XP_CONTINUOUS', data_structure='RAW', format=xp_format)``. ``ecsv`` is not
    offered: astroquery 0.4.11 returns unparsed, already deleted paths for ``.ecsv`` files.
    """

    def __init__(self, timeout: float = 600.0, xp_format: str = "votable", gaia=None,
                 data_release: str = "Gaia DR3"):
        if xp_format not in REAL_XP_FORMATS:
            raise StarfmInputError(f"xp format '{xp_format}' cannot be used with the real archive "
                                   "(astroquery parses votable, votable_plain, fits and csv)")
        self.timeout = timeout
        self.xp_format = xp_format
        self.data_release = data_release
        self._gaia = gaia

    @property
    def gaia(self):
        if self._gaia is None:
            from astroquery.gaia import Gaia  # imported here: starts no network until used
            self._gaia = Gaia
        return self._gaia

    def _call(self, what: str, func, *args, **kwargs):
        try:
            with _socket_timeout(self.timeout):
                return func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure is classified, none swallowed
            err = classify_archive_error(exc)
            raise type(err)(f"{what}: {err}") from exc

    def query_gaia_source(self, source_ids) -> Table:
        ids = Table({"source_id": np.asarray(source_ids, dtype=np.int64)})
        query = ("SELECT " + ", ".join(f"g.{c}" for c in GAIA_SOURCE_COLUMNS) +
                 " FROM gaiadr3.gaia_source AS g JOIN tap_upload.starfm_ids AS u"
                 " ON g.source_id = u.source_id")

        def run():
            job = self.gaia.launch_job_async(query, upload_resource=ids,
                                             upload_table_name="starfm_ids", verbose=False)
            return job.get_results()

        return self._call(f"gaia_source query for {len(ids)} ids", run)

    def load_xp_continuous(self, source_ids) -> dict[str, list]:
        ids = [int(i) for i in source_ids]
        return self._call(
            f"XP_CONTINUOUS load_data for {len(ids)} ids", self.gaia.load_data,
            ids=ids, data_release=self.data_release, retrieval_type="XP_CONTINUOUS",
            data_structure="RAW", format=self.xp_format)
