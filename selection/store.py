"""The scores store: one row per (sample_id, judge_id, version), SQLAlchemy over any database URL.

Writes are upserts with one rule: an OK score is never replaced by a failure, while a later OK score
replaces a failed one. So a resumed run re-asks only what is missing or failed, and nothing good is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Engine,
    Float,
    String,
    Text,
    and_,
    case,
    func,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from empathy.db import make_engine
from selection.judges.base import Score

CHUNK = 500  # rows per statement: SQLite allows ~32k bound parameters


class Base(DeclarativeBase):
    pass


class ScoreRow(Base):
    __tablename__ = "selection_scores"

    sample_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    judge_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[str] = mapped_column(String(100), primary_key=True)
    split: Mapped[str] = mapped_column(String(32), default="", index=True)
    sensibility: Mapped[float | None] = mapped_column(Float, nullable=True)
    rationality: Mapped[float | None] = mapped_column(Float, nullable=True)
    raw: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class JudgeInfo:
    judge_id: str
    version: str
    ok: int
    failed: int


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _insert_for(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    raise NotImplementedError(f"scores store: no upsert for database dialect {dialect!r}; "
                              "use SQLite or PostgreSQL (EMPATHY_STORE_URL).")


class ScoreStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        Base.metadata.create_all(engine)

    @classmethod
    def from_url(cls, url: str) -> ScoreStore:
        return cls(make_engine(url))

    def missing(self, ids: Sequence[str], judge_id: str, version: str) -> list[str]:
        """The ids (in the given order, deduplicated) without an OK score of this judge and version."""
        unique = list(dict.fromkeys(ids))
        done: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(unique):
                query = select(ScoreRow.sample_id).where(
                    ScoreRow.judge_id == judge_id, ScoreRow.version == version, ScoreRow.error.is_(None),
                    ScoreRow.sample_id.in_(chunk),
                )
                done.update(conn.scalars(query))
        return [sample_id for sample_id in unique if sample_id not in done]

    def put_many(self, scores: Sequence[Score], judge_id: str, version: str, split: str = "") -> int:
        """Upsert `scores` in one transaction; returns how many rows were written."""
        if not scores:
            return 0
        now = datetime.now(UTC)
        rows = [
            {"sample_id": s.sample_id, "judge_id": judge_id, "version": version, "split": split,
             "sensibility": s.sensibility if s.ok else None, "rationality": s.rationality if s.ok else None,
             "raw": s.raw, "error": None if s.ok else (s.error or "no score"), "created_at": now}
            for s in {s.sample_id: s for s in scores}.values()
        ]
        insert = _insert_for(self.engine.dialect.name)
        with self.engine.begin() as conn:
            for start in range(0, len(rows), CHUNK):
                stmt = insert(ScoreRow).values(rows[start:start + CHUNK])
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=["sample_id", "judge_id", "version"],
                    set_=self._update_set(stmt),
                ))
        return len(rows)

    @staticmethod
    def _update_set(stmt: Any) -> dict[str, Any]:
        """Replace the stored row unless it is OK and the new one failed."""
        keep_old = and_(ScoreRow.error.is_(None), stmt.excluded.error.is_not(None))
        columns = ("split", "sensibility", "rationality", "raw", "error", "created_at")
        return {name: case((keep_old, getattr(ScoreRow, name)), else_=getattr(stmt.excluded, name))
                for name in columns}

    def get(self, judge_id: str, version: str | None = None, ok_only: bool = True) -> dict[str, Score]:
        """sample_id -> Score of this judge (latest version when `version` is None)."""
        version = version or self.latest_version(judge_id)
        query = select(ScoreRow).where(ScoreRow.judge_id == judge_id, ScoreRow.version == version)
        if ok_only:
            query = query.where(ScoreRow.error.is_(None))
        with self.engine.connect() as conn:
            return {
                row.sample_id: Score(row.sample_id, row.sensibility, row.rationality, row.raw, row.error)
                for row in conn.execute(query)
            }

    def latest_version(self, judge_id: str) -> str | None:
        query = (select(ScoreRow.version).where(ScoreRow.judge_id == judge_id)
                 .group_by(ScoreRow.version).order_by(func.max(ScoreRow.created_at).desc()).limit(1))
        with self.engine.connect() as conn:
            return conn.scalar(query)

    def judges(self) -> list[JudgeInfo]:
        failed = func.sum(case((ScoreRow.error.is_not(None), 1), else_=0))
        query = (select(ScoreRow.judge_id, ScoreRow.version, func.count(), failed)
                 .group_by(ScoreRow.judge_id, ScoreRow.version).order_by(ScoreRow.judge_id, ScoreRow.version))
        with self.engine.connect() as conn:
            return [JudgeInfo(j, v, int(n) - int(f or 0), int(f or 0)) for j, v, n, f in conn.execute(query)]
