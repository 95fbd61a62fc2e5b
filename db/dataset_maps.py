"""The dataset map's storage: the newest 2-D projection, and the reads that colour its points."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import and_, delete, select

from db.engine import Database
from db.schema import DatasetMap, Image, Label, Score, as_utc


@dataclass(frozen=True)
class MapInfo:
    """A stored map without its coordinates: which pass it was made from, when, how, how many points."""

    id: int
    scorer: str
    pass_stamp: str
    method: str
    created_at: datetime
    seconds: float
    n: int


@dataclass(frozen=True)
class StoredMap:
    """A stored map: its facts, the image ids and their 2-D coordinates (same order)."""

    info: MapInfo
    image_ids: np.ndarray  # (N,) int64
    xy: np.ndarray  # (N, 2) float32


_INFO_COLUMNS = (
    DatasetMap.id,
    DatasetMap.scorer,
    DatasetMap.pass_stamp,
    DatasetMap.method,
    DatasetMap.created_at,
    DatasetMap.seconds,
    DatasetMap.n,
)


def _info(row) -> MapInfo:
    map_id, scorer, stamp, method, created_at, seconds, n = row
    return MapInfo(map_id, scorer, stamp, method, as_utc(created_at), float(seconds), int(n))


def store_map(
    database: Database,
    *,
    scorer: str,
    stamp: str,
    method: str,
    seconds: float,
    image_ids: np.ndarray,
    xy: np.ndarray,
) -> int:
    """Store a new map and drop the older ones, in one transaction; returns the new map's id."""
    ids = np.asarray(image_ids, dtype=np.int64)
    points = np.asarray(xy, dtype=np.float32).reshape(len(ids), 2)
    with database.write() as session:
        row = DatasetMap(
            scorer=scorer,
            pass_stamp=stamp,
            method=method,
            seconds=float(seconds),
            n=len(ids),
            image_ids=ids.tobytes(),
            xy=points.tobytes(),
        )
        session.add(row)
        session.flush()
        session.execute(delete(DatasetMap).where(DatasetMap.id < row.id))
        return row.id


def latest_info(database: Database) -> MapInfo | None:
    """The newest stored map's facts, without reading its coordinates (None when no map is stored)."""
    with database.read() as session:
        row = session.execute(select(*_INFO_COLUMNS).order_by(DatasetMap.id.desc()).limit(1)).first()
    return _info(row) if row else None


def load_map(database: Database, map_id: int) -> StoredMap | None:
    """One stored map with its coordinates (None when it was replaced meanwhile)."""
    with database.read() as session:
        row = session.execute(
            select(*_INFO_COLUMNS, DatasetMap.image_ids, DatasetMap.xy).where(DatasetMap.id == map_id)
        ).first()
    if row is None:
        return None
    *facts, ids, xy = row
    return StoredMap(
        _info(facts), np.frombuffer(ids, dtype=np.int64), np.frombuffer(xy, dtype=np.float32).reshape(-1, 2)
    )


@dataclass(frozen=True)
class PointFacts:
    """An active image's current label and what a scoring pass said of it (score None when not scored)."""

    image_id: int
    label: str | None
    score: float | None
    scored_label: str | None
    predicted_label: str | None


def point_facts(database: Database, scorer: str) -> list[PointFacts]:
    """Every active image's current label, with its score, scored label and prediction in the pass scorer."""
    with database.read() as session:
        rows = session.execute(
            select(Image.id, Label.name, Score.score, Score.given_label, Score.predicted_label)
            .outerjoin(Label, Image.label_id == Label.id)
            .outerjoin(Score, and_(Score.image_id == Image.id, Score.scorer == scorer))
            .where(Image.status == "active")
            .order_by(Image.id)
        ).all()
    return [PointFacts(*row) for row in rows]
