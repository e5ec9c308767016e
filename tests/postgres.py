"""A private PostgreSQL server for the tests: initdb + pg_ctl in a temp folder, loopback, trust auth.

PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` system user (which Debian's package creates), else as the
current user.  One server per test session; every test gets a database of
its own, copied from a template that is migrated once.
"""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

from maildesk.storage.postgres import migrate


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL is not installed: run scripts/install")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    TEMPLATE = "maildesk_template"

    def __init__(self, *, durable: bool = False) -> None:
        # durable: fsync as a production server does (benchmarks); tests kill clients, not the server.
        self.durable = durable
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="maildesk-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "postgres"  # the database superuser's name
        self._names = itertools.count(1)
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
            self._run_as = ["runuser", "-u", "postgres", "--"]
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self._run_as, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       cwd=self.root)

    def start(self) -> "PostgresServer":
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {self.TEMPLATE}")
        migrate(self.url(self.TEMPLATE))
        return self

    def url(self, database: str = "postgres", user: str | None = None) -> str:
        return f"postgresql://{user or self.user}@127.0.0.1:{self.port}/{database}"

    def admin(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.url(database), autocommit=True)

    def create_database(self, *, migrated: bool = True) -> str:
        """A fresh database (migrated like the template unless asked otherwise); its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {self.TEMPLATE}" if migrated else ""))
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
