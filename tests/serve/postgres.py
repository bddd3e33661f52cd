"""A throwaway PostgreSQL server for the tests: a cluster made by `initdb` in a temp dir, listening only on a
unix socket in that dir (named by a free port number), stopped and removed at the end.

Debian's `postgresql` package provides the binaries (`scripts/setup.sh --test` installs it); they live in
/usr/lib/postgresql/<version>/bin, which is not on PATH, so that is searched too. PostgreSQL refuses to run
as root: as root the cluster belongs to, and runs as, the unprivileged user `nobody` (through `runuser`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

RUN_AS = os.environ.get("EMPATHY_TEST_PG_USER", "nobody")  # used only when the tests run as root


def bin_dir() -> Path:
    """The folder with `initdb` and `pg_ctl`: PATH first, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not versions:
        raise RuntimeError("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: run "
                           "`bash scripts/setup.sh --test` (it installs Debian's postgresql package).")
    return versions[-1].parent


@dataclass
class PostgresServer:
    root: Path
    port: int
    bin: Path
    prefix: list[str]  # runs the server's commands as its owner

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of `database` over the unix socket."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.root}&port={self.port}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self) -> str:
        """A new empty database; its name."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def pg_ctl(self, *args: str) -> None:
        subprocess.run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), *args], check=True,
                       cwd=self.root, capture_output=True, timeout=120)

    def stop(self) -> None:
        try:
            self.pg_ctl("stop", "-m", "fast", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _owner() -> tuple[list[str], int | None, int | None]:
    """(command prefix, uid, gid) of the user the server runs as."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        user = pwd.getpwnam(RUN_AS)
    except KeyError:
        raise RuntimeError(f"the tests run as root and PostgreSQL refuses root: create the user {RUN_AS!r} "
                           "or set EMPATHY_TEST_PG_USER to an unprivileged user") from None
    return ["runuser", "-u", RUN_AS, "--"], user.pw_uid, user.pw_gid


def start_postgres() -> PostgresServer:
    """initdb + pg_ctl start in a new temp dir (directly under /tmp, so that `nobody` can reach it)."""
    prefix, uid, gid = _owner()
    root = Path(tempfile.mkdtemp(prefix="empathy-pg-", dir="/tmp"))
    if uid is not None and gid is not None:
        os.chown(root, uid, gid)
    server = PostgresServer(root=root, port=free_port(), bin=bin_dir(), prefix=prefix)
    try:
        subprocess.run([*prefix, str(server.bin / "initdb"), "-D", str(server.data), "-U", "postgres",
                        "-A", "trust", "-E", "UTF8", "--no-sync"], check=True, cwd=root, capture_output=True,
                       timeout=300)
        options = (f"-p {server.port} -k {root} -c listen_addresses='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                   "-c shared_buffers=32MB")
        server.pg_ctl("start", "-w", "-t", "120", "-l", str(root / "postgres.log"), "-o", options)
    except subprocess.CalledProcessError as exc:
        log = (root / "postgres.log").read_text() if (root / "postgres.log").is_file() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"the test PostgreSQL did not start: {exc.stderr.decode(errors='replace')}"
                           f"{log[-2000:]}") from exc
    return server
