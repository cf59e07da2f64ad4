"""MLflow artifact locations relative to the project: a copied or moved project keeps its artifacts. No Kedro here.

MLflow stores every artifact location as an absolute path (``/home/me/project/mlruns/1/<run
id>/artifacts``), whatever was configured: the experiment's, each run's, each logged
model's and each registered model version's. A copy of the project then reads the old
folder's artifacts, or none once it is gone (``mlflow models serve -m runs:/...``: "Could not
find an MLmodel"). :func:`make_relative` rewrites, in the project's SQLite store, every such
location under the project root as a path relative to it (``mlruns/1/<run id>/artifacts``);
runs made after that get relative locations from their experiment. MLflow resolves a
relative location against the working directory, so the store is used from the project
root: ``kedro`` commands make sure of it (:class:`urban_detection.hooks.MlflowRunHooks`),
and ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` or ``mlflow models serve`` run
there, as the README shows. Locations outside the project (another disk, a server) stay.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from urllib.parse import unquote

log = logging.getLogger(__name__)

# (table, column) of MLflow's SQL schema holding artifact locations
LOCATIONS = (("experiments", "artifact_location"), ("runs", "artifact_uri"), ("logged_models", "artifact_location"),
             ("model_versions", "storage_location"), ("model_versions", "source"))


def sqlite_file(tracking_uri: str | None) -> Path | None:
    """The database file of a ``sqlite:///<path>`` tracking URI, else None."""
    if not tracking_uri or not str(tracking_uri).startswith("sqlite:///"):
        return None
    return Path(unquote(str(tracking_uri)[len("sqlite:///"):].split("?", 1)[0]))


def _prefixes(root: Path) -> list[str]:
    """How MLflow may spell a location under ``root``: a path or a ``file://`` URI, as given or resolved."""
    roots = {str(Path(root).absolute()), str(Path(root).resolve())}
    return sorted({p for r in roots for p in (f"{r.rstrip('/')}/", f"file://{r.rstrip('/')}/")}, key=len, reverse=True)


def absolute_locations(db: Path, root: Path) -> dict[str, int]:
    """``table.column -> rows`` whose location lies under ``root`` as an absolute path or URI."""
    out = {}
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con, con:  # closed, and committed
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, column in LOCATIONS:
            if table not in tables:
                continue
            count = sum(con.execute(f"SELECT count(*) FROM {table} WHERE substr({column}, 1, ?) = ?",  # noqa: S608
                                    (len(prefix), prefix)).fetchone()[0] for prefix in _prefixes(root))
            if count:
                out[f"{table}.{column}"] = count
    return out


def make_relative(tracking_uri: str | None, root: Path) -> int:
    """Rewrite the artifact locations under ``root`` in the SQLite store of ``tracking_uri`` relative to
    ``root``; returns how many were rewritten (0 for another kind of store, or when none is absolute)."""
    db = sqlite_file(tracking_uri)
    if db is None or not db.is_file() or not absolute_locations(db, root):
        return 0
    changed = 0
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con, con:  # closed, and committed
        for table, column in LOCATIONS:
            for prefix in _prefixes(root):
                try:
                    sql = (f"UPDATE {table} SET {column} = substr({column}, ?) "  # noqa: S608 - names from LOCATIONS
                           f"WHERE substr({column}, 1, ?) = ?")
                    changed += con.execute(sql, (len(prefix) + 1, len(prefix), prefix)).rowcount
                except sqlite3.OperationalError:  # an older schema without this table
                    break
    log.info("MLflow store %s: %d artifact location(s) now relative to the project root %s", db, changed, root)
    return changed
