"""A throw-away PostgreSQL server on loopback for the tracking-store bench (platform/bench/tracking_store.py).

The distribution's server binaries (Debian/Ubuntu: ``apt-get install postgresql``; they live in
``/usr/lib/postgresql/<version>/bin``) make a fresh cluster in a temporary directory (``initdb``),
which ``pg_ctl`` starts on 127.0.0.1 at a free port with its socket in that directory, and stops
and deletes afterwards.  PostgreSQL refuses to run as root: as root the cluster belongs to the
``postgres`` system user the package creates (commands run through ``runuser``).  Trust
authentication on loopback only (a bench on one machine; ray_cluster.yaml's server uses the
Unix socket with peer authentication).  The Python driver is psycopg2 (pyproject.toml extra
``cluster``).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time


class PostgresUnavailable(RuntimeError):
    """Why no PostgreSQL server can be started here (one line)."""


def _bin_dir() -> str | None:
    found = shutil.which("pg_ctl")
    if found and os.path.exists(os.path.join(os.path.dirname(os.path.realpath(found)), "initdb")):
        return os.path.dirname(os.path.realpath(found))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(versions[-1]) if versions else None


def check_available() -> str:
    """The server binaries' directory; raises PostgresUnavailable (binaries, the driver or, as root,
    the ``postgres`` user missing)."""
    bindir = _bin_dir()
    if bindir is None:
        raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) found: apt-get install postgresql")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        raise PostgresUnavailable("the psycopg2 driver is not installed: pip install -e '.[cluster]'") from None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no 'postgres' user to own the server") from None
    return bindir


class TempPostgres:
    """``with TempPostgres(port) as pg: pg.uri("mlflow")``: a cluster with databases created on demand."""

    def __init__(self, port: int, user: str = "dtr"):
        self.bindir = check_available()
        self.port, self.user = port, user
        self.dir = tempfile.mkdtemp(prefix="dtr-bench-pg-")
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as_owner = ["runuser", "-u", "postgres", "--"]

    def _run(self, *cmd: str) -> None:
        done = subprocess.run([*self._as_owner, *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{os.path.basename(cmd[0])} failed: "
                                      f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")

    def __enter__(self) -> "TempPostgres":
        data = os.path.join(self.dir, "data")
        self._run(os.path.join(self.bindir, "initdb"), "-D", data, "-U", self.user, "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on"
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", data, "-o", options, "-l",
                  os.path.join(self.dir, "server.log"), "-w", "-t", "60", "start")
        return self

    def create_database(self, name: str) -> str:
        import psycopg2
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.uri(name)

    def uri(self, name: str) -> str:
        # the driver named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, not psycopg2
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{name}"

    def __exit__(self, *exc) -> None:
        data = os.path.join(self.dir, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run([*self._as_owner, os.path.join(self.bindir, "pg_ctl"), "-D", data, "-m", "fast", "-w",
                            "stop"], capture_output=True, timeout=120)
        for _ in range(3):
            shutil.rmtree(self.dir, ignore_errors=True)
            if not os.path.exists(self.dir):
                break
            time.sleep(0.5)
