"""The gateway's tables: completions, arm assignments, ratings, pairwise votes, experiments, and the
router's per-conversation decisions (so a conversation keeps its blend across gateway restarts and
across gateways that share one database).

Every function opens its own short transaction (callers run them in a thread: never across an await).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import (
    JSON,
    Boolean,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    and_,
    delete,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from serve.experiments import Experiment
from serve.migrations import migrate

log = logging.getLogger("empathy.serve")
# Dialects with a one-statement insert-or-update (`on_conflict_do_update`); others use the ORM's merge.
UPSERT_INSERTS: dict[str, Any] = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}


class Base(DeclarativeBase):
    pass


@functools.cache
def _completion_upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (id) DO UPDATE SET <every other column> = the new row's, for `dialect` (None:
    no such statement there). Built once and run with each row's values as parameters, so SQLAlchemy
    reuses its compiled form: 0.1 ms of CPU per reply instead of 0.7 ms for a statement built anew around
    each row's values."""
    insert = UPSERT_INSERTS.get(dialect)
    if insert is None:
        return None
    stmt = insert(CompletionRow)
    return stmt.on_conflict_do_update(index_elements=["id"], set_={
        c.name: stmt.excluded[c.name] for c in CompletionRow.__table__.columns if c.name != "id"})


@functools.cache
def _compiled(stmt: Any, dialect: Any) -> tuple[str, tuple[str, ...]]:
    """The SQL of `stmt` in a positional paramstyle (SQLite's `?`), and its parameters' names in order."""
    compiled = stmt.compile(dialect=dialect)
    return str(compiled), tuple(compiled.positiontup or ())


class CompletionRow(Base):
    __tablename__ = "serve_completions"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created: Mapped[float] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(128), index=True)
    adapter: Mapped[str] = mapped_column(String(256))
    blend: Mapped[float | None] = mapped_column(Float, nullable=True)
    source: Mapped[str] = mapped_column(String(32))
    experiment: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    arm: Mapped[str | None] = mapped_column(String(64), nullable=True)
    subject: Mapped[str | None] = mapped_column(String(256), nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    completion_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)  # vLLM's usage


class AssignmentRow(Base):
    __tablename__ = "serve_assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created: Mapped[float] = mapped_column(Float)
    experiment: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(256))
    arm: Mapped[str] = mapped_column(String(64))
    __table_args__ = (Index("ix_serve_assignments_exp_subject", "experiment", "subject"),)


class RatingRow(Base):
    __tablename__ = "serve_ratings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created: Mapped[float] = mapped_column(Float)
    completion_id: Mapped[str] = mapped_column(ForeignKey("serve_completions.id"), index=True)
    value: Mapped[float] = mapped_column(Float)
    scale: Mapped[str] = mapped_column(String(16))


class PairwiseRow(Base):
    __tablename__ = "serve_pairwise"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created: Mapped[float] = mapped_column(Float)
    completion_a: Mapped[str] = mapped_column(ForeignKey("serve_completions.id"), index=True)
    completion_b: Mapped[str] = mapped_column(ForeignKey("serve_completions.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    voter: Mapped[str | None] = mapped_column(String(256), nullable=True)
    __table_args__ = (Index("ix_serve_pairwise_voter_created", "voter", "created"),)


class ExperimentRow(Base):
    __tablename__ = "serve_experiments"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class Completion:
    id: str
    model: str
    adapter: str
    blend: float | None
    source: str
    experiment: str | None
    arm: str | None
    subject: str | None
    latency_ms: float
    ttft_ms: float | None
    stream: bool
    completion_tokens: int | None = None  # the reply's length in tokens (vLLM's `usage`)


class VoteRefused(Exception):
    """A pairwise vote not stored: `duplicate` (this voter already voted on this pair of completions) or
    `cap` (this voter's votes since the start of the day reached the cap)."""

    def __init__(self, reason: str, voter: str, count: int) -> None:
        super().__init__(f"{reason}: {voter} ({count})")
        self.reason, self.voter, self.count = reason, voter, count


class RouteRow(Base):
    __tablename__ = "serve_routes"
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    created: Mapped[float] = mapped_column(Float)
    adapter: Mapped[str] = mapped_column(String(256))
    blend: Mapped[float | None] = mapped_column(Float, nullable=True)
    probs: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrate(engine)  # create or upgrade the schema (serve/migrations)

    def add_completion(self, c: Completion) -> None:
        self.add_completions([c])

    def add_completions(self, rows: Sequence[Completion]) -> None:
        """Insert the completions, or update the rows of ids stored before, in one transaction: one statement
        on SQLite and PostgreSQL (the ORM's merge would read each row first), on the path to the end of every
        reply. An id given twice keeps its last row."""
        now = time.time()
        values = list({c.id: {"created": now, **c.__dict__} for c in rows}.values())
        stmt = _completion_upsert(self.engine.dialect.name)
        if stmt is None:
            with Session(self.engine) as s, s.begin():
                for v in values:
                    s.merge(CompletionRow(**v))
        elif self.engine.dialect.name == "sqlite":
            self._execute_raw(stmt, values)
        else:
            with self.engine.begin() as conn:
                conn.execute(stmt, values)

    def _execute_raw(self, stmt: Any, values: list[dict[str, Any]]) -> None:
        """`stmt` (compiled once) on a pooled DBAPI connection: SQLAlchemy's execution machinery costs 3x the
        SQLite write itself, and this runs at the end of every reply."""
        sql, keys = _compiled(stmt, self.engine.dialect)
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        conn = self.engine.raw_connection()
        try:
            conn.cursor().executemany(sql, [[v[k] for k in keys] for v in values])
            conn.commit()
        except dbapi_error as exc:  # raised as SQLAlchemy raises it (IntegrityError, OperationalError, ...)
            conn.rollback()
            raise DBAPIError.instance(sql, None, exc, dbapi_error) from exc
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()  # back to the pool

    def put_route(self, key: str, adapter: str, blend: float | None,
                  probs: list[float] | None) -> tuple[str, float | None, list[float] | None]:
        """Store a conversation's route unless it has one; the route stored. Two requests of one new
        conversation may race here (two tabs, two gateways on one database): the first route stored stays,
        and the other request gets it back, so both (and every gateway afterwards) use the same blend."""
        from sqlalchemy.exc import IntegrityError

        try:
            with Session(self.engine) as s, s.begin():
                s.add(RouteRow(key=key, created=time.time(), adapter=adapter, blend=blend, probs=probs))
            return adapter, blend, probs
        except IntegrityError:
            log.info("route %s was stored by a concurrent request; keeping the first one", key[:16])
            return self.get_route(key) or (adapter, blend, probs)

    def get_route(self, key: str) -> tuple[str, float | None, list[float] | None] | None:
        with Session(self.engine) as s:
            row = s.get(RouteRow, key)
            return (row.adapter, row.blend, row.probs) if row is not None else None

    def add_assignment(self, experiment: str, subject: str, arm: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.add(AssignmentRow(created=time.time(), experiment=experiment, subject=subject, arm=arm))

    def missing_completions(self, ids: list[str]) -> list[str]:
        with Session(self.engine) as s:
            found = set(s.scalars(select(CompletionRow.id).where(CompletionRow.id.in_(ids))))
        return [i for i in ids if i not in found]

    def add_rating(self, completion_id: str, value: float, scale: str) -> int:
        with Session(self.engine) as s, s.begin():
            row = RatingRow(created=time.time(), completion_id=completion_id, value=value, scale=scale)
            s.add(row)
            s.flush()
            return row.id

    def add_pairwise(self, a: str, b: str, outcome: str, voter: str | None = None, cap: int = 0,
                     day_start: float = 0.0) -> int:
        """Store a vote; with a `voter`, VoteRefused when they already voted on this pair (either order) or
        when it would be more than `cap` (> 0) of their votes since `day_start`. The vote is inserted first
        and counted in the same transaction, so two concurrent votes of one voter cannot both slip in
        (SQLite: the second waits for the first one's write lock; PostgreSQL: for a lock on the voter)."""
        with Session(self.engine) as s, s.begin():
            if voter is not None and self.engine.dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:voter))"), {"voter": voter})
            row = PairwiseRow(created=time.time(), completion_a=a, completion_b=b, outcome=outcome,
                              voter=voter)
            s.add(row)
            s.flush()
            if voter is not None:
                self._check_voter(s, voter, a, b, cap, day_start)
            return row.id

    @staticmethod
    def _check_voter(s: Session, voter: str, a: str, b: str, cap: int, day_start: float) -> None:
        mine = select(func.count()).select_from(PairwiseRow).where(PairwiseRow.voter == voter)
        same_pair = or_(and_(PairwiseRow.completion_a == a, PairwiseRow.completion_b == b),
                        and_(PairwiseRow.completion_a == b, PairwiseRow.completion_b == a))
        if int(s.scalar(mine.where(same_pair)) or 0) > 1:
            raise VoteRefused("duplicate", voter, 1)
        if cap > 0 and int(s.scalar(mine.where(PairwiseRow.created >= day_start)) or 0) > cap:
            raise VoteRefused("cap", voter, cap)

    def save_experiment(self, exp: Experiment) -> None:
        with Session(self.engine) as s, s.begin():
            s.merge(ExperimentRow(name=exp.name, definition=exp.model_dump(), updated=time.time()))

    def experiments(self) -> list[Experiment]:
        """Every stored experiment that is still valid; a row that is not (written by another version,
        or by hand) is skipped with a warning instead of breaking every listing."""
        with Session(self.engine) as s:
            rows = s.execute(select(ExperimentRow.name, ExperimentRow.definition)
                             .order_by(ExperimentRow.name)).all()
        found = []
        for name, definition in rows:
            try:
                found.append(Experiment.model_validate(definition))
            except (ValidationError, TypeError, ValueError) as exc:
                log.warning("stored experiment %r is invalid and ignored (%s); DELETE /v1/experiments/%s "
                            "removes it", name, str(exc).splitlines()[0], name)
        return found

    def delete_experiment(self, name: str) -> bool:
        """Remove the experiment's definition (its completions and feedback stay, as history)."""
        with Session(self.engine) as s, s.begin():
            statement = delete(ExperimentRow).where(ExperimentRow.name == name)
            result = cast(CursorResult[Any], s.execute(statement))
            return result.rowcount > 0

    def counts(self) -> dict[str, int]:
        with Session(self.engine) as s:
            return {table.__tablename__: int(s.scalar(select(func.count()).select_from(table)) or 0)
                    for table in (CompletionRow, AssignmentRow, RatingRow, PairwiseRow)}

    def experiment_data(self, exp: Experiment) -> dict[str, Any]:
        """Raw rows the results of one experiment are computed from: only its own traffic (completions
        it assigned or that named one of its arms), from its creation on; ratings and votes in arrival
        order (the confidence sequences follow it)."""
        since = exp.created or 0.0
        arms = [a.name for a in exp.arms]
        with Session(self.engine) as s:
            comps = s.scalars(select(CompletionRow).where(
                CompletionRow.experiment == exp.name, CompletionRow.arm.in_(arms),
                CompletionRow.created >= since)).all()
            arm_of: dict[str, str | None] = {c.id: c.arm for c in comps}
            ratings = s.execute(select(RatingRow.completion_id, RatingRow.value, RatingRow.scale)
                                .where(RatingRow.completion_id.in_(list(arm_of))).order_by(RatingRow.id)).all()
            votes = s.execute(select(PairwiseRow.completion_a, PairwiseRow.completion_b, PairwiseRow.outcome)
                              .where(PairwiseRow.completion_a.in_(list(arm_of))).order_by(PairwiseRow.id)).all()
            assigned = s.execute(select(AssignmentRow.arm, func.count(func.distinct(AssignmentRow.subject)))
                                 .where(AssignmentRow.experiment == exp.name, AssignmentRow.created >= since)
                                 .group_by(AssignmentRow.arm)).all()
            latency = [(arm_of[c.id], c.latency_ms, c.ttft_ms) for c in comps]
            lengths = {c.id: c.completion_tokens for c in comps if c.completion_tokens is not None}
        return {"arm_of": arm_of, "ratings": [tuple(r) for r in ratings], "votes": [tuple(v) for v in votes],
                "assigned": dict(assigned), "latency": latency, "lengths": lengths}
