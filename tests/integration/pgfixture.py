"""A private PostgreSQL server for the integration tests (the pytest twin of
tests/pg/pg-run).

    from pgfixture import pg_server          # in a test module
    def test_x(pg_server):
        cfg = f"[store]\\nbackend = postgresql\\npostgresql = {pg_server.conninfo}\\n"

`pg_server` is module-scoped: one server per test module, started on first
use and stopped (pg_ctl stop -m fast) with its folder removed when the
module is done, whatever happened. The server listens on a unix socket in
its temp folder only (listen_addresses=''), so no port can clash with
another test run or a system server. initdb refuses root, so as root the
server runs as user postgres (runuser). A missing PostgreSQL FAILS the test
(pytest.fail), it never skips.

PgServer: conninfo ("host=DIR dbname=pushpbx user=postgres"), dir, stop(),
start() (the same folder: a restart keeps the data), kill() (SIGKILL of
the postmaster: a crash), psql(sql) -> stdout (runs sql on database
pushpbx), reset() (drops and recreates the database between tests).
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

PG_BIN = os.environ.get("PUSHPBX_PG_BIN", "/usr/lib/postgresql/15/bin")


class PgServer:
    def __init__(self):
        for tool in ("initdb", "pg_ctl", "postgres", "createdb", "psql"):
            path = os.path.join(PG_BIN, tool)
            if tool == "psql" and not os.access(path, os.X_OK):
                path = shutil.which("psql") or path
            if not os.access(path, os.X_OK):
                pytest.fail(f"PostgreSQL 15 missing: no {path} "
                            "(scripts/install-deps installs postgresql-15)")
        self.dir = tempfile.mkdtemp(prefix="pp-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.as_user = []
        if os.getuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, user="postgres")
        os.chmod(self.dir, 0o700)
        self.conninfo = f"host={self.dir} dbname=pushpbx user=postgres"
        self._run(["initdb", "-D", self.data, "--auth=trust", "-U",
                   "postgres", "-E", "UTF8", "--locale=C.UTF-8"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = ''\n"
                    f"unix_socket_directories = '{self.dir}'\n"
                    "fsync = off\n")
        self.start()
        self._run(["createdb", "-h", self.dir, "-U", "postgres", "pushpbx"])

    def _run(self, argv, **kw):
        tool = os.path.join(PG_BIN, argv[0])
        if argv[0] == "psql" and not os.access(tool, os.X_OK):
            tool = shutil.which("psql")
        r = subprocess.run(self.as_user + [tool] + argv[1:],
                           capture_output=True, text=True, timeout=60, **kw)
        if r.returncode != 0:
            log = ""
            if os.path.exists(self.log):
                with open(self.log) as f:
                    log = f.read()[-2000:]
            pytest.fail(f"{argv[0]} failed ({r.returncode}): {r.stderr}\n{log}")
        return r.stdout

    def start(self):
        self._run(["pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "30",
                   "start"])

    def stop(self):
        self._run(["pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"])

    def pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def kill(self):
        """SIGKILL the postmaster and its children: a crash. start() runs
        crash recovery."""
        pid = self.pid()
        subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        pidfile = os.path.join(self.data, "postmaster.pid")
        if os.path.exists(pidfile):
            os.unlink(pidfile)

    def psql(self, sql, db="pushpbx"):
        return self._run(["psql", "-h", self.dir, "-U", "postgres", "-d", db,
                          "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])

    def reset(self):
        """An empty database pushpbx (between tests of one module)."""
        self.psql("DROP DATABASE IF EXISTS pushpbx WITH (FORCE)", db="postgres")
        self.psql("CREATE DATABASE pushpbx", db="postgres")

    def close(self):
        try:
            subprocess.run(self.as_user + [os.path.join(PG_BIN, "pg_ctl"),
                                           "-D", self.data, "-m", "fast",
                                           "-w", "stop"],
                           capture_output=True, timeout=60, check=False)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_server():
    server = PgServer()
    try:
        yield server
    finally:
        server.close()
