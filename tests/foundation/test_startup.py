"""First contact: ``relay serve`` flags, start-up failures as one line, and ``relay admin`` finding the
server's database (never creating one), as real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.settings import default_data_dir, load_settings
from tests.conftest import PG_BIN, _as_postgres, create_database, free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "startup-admin-token-" + "s" * 20


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "XDG_"))}
    env.update({"PYTHONPATH": str(ROOT), "RELAY_LOG_FORMAT": "text", "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1",
                "RELAY_SHUTDOWN_TIMEOUT_S": "3"})
    env.update(extra)
    return env


def _relay(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relay", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=90)


def _failure_line(out: subprocess.CompletedProcess[str], prefix: str = "relay: ") -> str:
    """The one line a failed start ends with (logs may come before it), and no traceback."""
    assert out.returncode != 0, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(prefix), out.stderr
    return last


class Server:
    """``relay serve`` in the background; ``base`` once it printed its console link."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, tmp: Path) -> None:
        self.out, self.err = tmp / "serve.out", tmp / "serve.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "relay", "serve", *args], env=env, cwd=cwd,
                                         stdout=out, stderr=err)
        deadline = time.monotonic() + 60
        while "Console: " not in self.out.read_text():
            assert self.proc.poll() is None, self.err.read_text()
            assert time.monotonic() < deadline, self.err.read_text()
            time.sleep(0.1)
        self.base = self.out.read_text().split("Console: ", 1)[1].split("/#", 1)[0]

    def get(self, path: str, token: str | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.base + path,
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
            return resp.status, json.loads(resp.read())

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


# --- the data directory -------------------------------------------------------


def test_default_data_dir_is_per_user_not_per_working_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert default_data_dir({"HOME": str(home)}) == home / ".local/share/relay"
    assert default_data_dir({"HOME": str(home), "XDG_DATA_HOME": str(tmp_path / "xdg")}) == tmp_path / "xdg/relay"
    assert default_data_dir({"HOME": str(home), "XDG_DATA_HOME": "relative"}) == home / ".local/share/relay"
    settings = load_settings(environ={"HOME": str(home)})
    assert settings.data_path == home / ".local/share/relay"
    assert settings.effective_database_url == f"sqlite:///{home}/.local/share/relay/relay.db"
    # a relative data_dir is resolved once, at load: messages and children see an absolute path
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert load_settings(environ={"RELAY_DATA_DIR": "rel"}).data_dir == str(tmp_path / "rel")
    finally:
        os.chdir(cwd)


def test_serve_and_admin_in_different_directories_share_one_database(tmp_path: Path) -> None:
    """Same settings (none but HOME), two working directories: the client the admin creates is the server's."""
    home, here, there = tmp_path / "home", tmp_path / "a", tmp_path / "b"
    for d in (home, here, there):
        d.mkdir()
    env = _env(HOME=str(home), RELAY_PORT="0", RELAY_ADMIN_TOKEN=ADMIN_TOKEN)
    server = Server([], env, here, tmp_path)
    try:
        out = _relay(["admin", "--json", "--verbose", "clients", "create", "--name", "kitchen"], env, cwd=there)
        assert out.returncode == 0, out.stderr
        created = json.loads(out.stdout)
        db_path = home / ".local/share/relay/relay.db"
        assert f"relay admin: database SQLite {db_path} (data_dir: the default;" in out.stderr
        status, listed = server.get("/admin/v1/clients", ADMIN_TOKEN)
        assert status == 200
        items = listed["data"] if isinstance(listed, dict) and "data" in listed else listed
        assert created["id"] in json.dumps(items)
    finally:
        assert server.stop() == 0
    assert not (here / "relay-data").exists() and not (there / "relay-data").exists()


def test_admin_never_creates_a_database(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    out = _relay(["admin", "clients", "list"], _env(RELAY_DATA_DIR=str(data)))
    line = _failure_line(out, "relay admin: ")
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert f"no relay database at {data / 'relay.db'}" in line and "RELAY_DATA_DIR" in line
    assert not data.exists()  # nothing made: no directory, no empty database

    out = _relay(["admin", "workspaces", "list"], _env(HOME=str(tmp_path / "home")))
    line = _failure_line(out, "relay admin: ")
    assert str(tmp_path / "home/.local/share/relay/relay.db") in line and "data_dir: the default" in line
    assert not (tmp_path / "home").exists()


def test_admin_verbose_names_the_database_it_used(tmp_path: Path) -> None:
    data = tmp_path / "data"
    create_database(data)
    config = tmp_path / "relay.toml"
    config.write_text(f'data_dir = "{data}"\n')
    out = _relay(["admin", "--verbose", "--config", str(config), "workspaces", "list"], _env())
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines()[0] == f"relay admin: database SQLite {data / 'relay.db'} (data_dir: data_dir in {config})"
    assert "default" in out.stdout
    quiet = _relay(["admin", "--config", str(config), "workspaces", "list"], _env())
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_admin_refuses_an_empty_postgresql_database(pg_database_url: str) -> None:
    out = _relay(["admin", "-v", "clients", "list"], _env(RELAY_DATABASE_URL=pg_database_url))
    line = _failure_line(out, "relay admin: ")
    assert "no relay tables in postgresql://postgres@127.0.0.1:" in line and "RELAY_DATABASE_URL" in line


# --- relay serve flags ------------------------------------------------------------


def test_serve_flags_beat_environment_and_config(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(f'port = 1\ndata_dir = "{tmp_path / "from-config"}"\n')
    port = free_port()
    env = _env(RELAY_DATA_DIR=str(tmp_path / "from-env"), RELAY_HOST="0.0.0.0")
    server = Server(["--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                     "--data-dir", str(tmp_path / "from-flag"), "--workers", "1"], env, tmp_path, tmp_path)
    try:
        assert server.base == f"http://127.0.0.1:{port}"
        assert server.get("/healthz") == (200, {"status": "ok"})
    finally:
        assert server.stop() == 0
    assert (tmp_path / "from-flag/relay.db").exists()
    assert not (tmp_path / "from-env").exists() and not (tmp_path / "from-config").exists()


def test_invalid_workers_are_refused_in_one_line(tmp_path: Path) -> None:
    for value in ("0", "many"):
        out = _relay(["serve", "--workers", value, "--data-dir", str(tmp_path)], _env())
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stderr.startswith("relay: setting workers must be"), out.stderr
    # per-call ports (ice_mux off): each worker owns a slice of the UDP range; one that leaves a worker fewer
    # than 10 ports is refused before binding
    out = _relay(["serve", "--workers", "3", "--data-dir", str(tmp_path)],
                 _env(RELAY_ICE_MUX="false", RELAY_ICE_PORT_MIN="40000", RELAY_ICE_PORT_MAX="40028"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == \
        "relay: ice_port_min..ice_port_max has 29 port(s): split over workers 3, 9 per worker, fewer than 10 " \
        "(one per call): widen the range or lower workers", out.stderr


def test_worker_ports_past_65535_are_refused_in_one_line(tmp_path: Path) -> None:
    """Worker i of a node listens on ice_udp_port + i: the last worker's port must exist."""
    out = _relay(["serve", "--workers", "2", "--port", "0", "--data-dir", str(tmp_path)],
                 _env(RELAY_ICE_UDP_PORT="65535"))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.strip() == ("relay: ice_udp_port 65535 + workers 2 - 1 = 65536 is above 65535 "
                                  "(worker i listens on ice_udp_port + i): lower ice_udp_port or workers")
    assert not (tmp_path / "relay.db").exists()  # refused before the database or any socket
    # one port lower, the last worker gets 65535: the node starts, and stops cleanly
    server = Server(["--workers", "2", "--port", "0", "--data-dir", str(tmp_path)],
                    _env(RELAY_ICE_UDP_PORT="65534", RELAY_CONSOLE_LINK="true"), tmp_path, tmp_path)
    assert server.stop() == 0


# --- start-up failures: one line, non-zero exit ------------------------------------


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = _relay(["serve", "--port", str(port), "--data-dir", str(tmp_path)], _env())
    line = _failure_line(out)
    assert out.returncode == 1
    assert line == f"relay: cannot listen on 127.0.0.1:{port}: Address already in use (port: --port)"


def test_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = _relay(["serve", "--port", "0"], _env(RELAY_DATA_DIR=str(blocker / "data")))
    line = _failure_line(out)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert line == (f"relay: the data directory {blocker / 'data'} is not writable: Not a directory "
                    "(data_dir: RELAY_DATA_DIR in the environment)")
    if os.geteuid() != 0:  # root writes through permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = _relay(["serve", "--port", "0", "--data-dir", str(locked)], _env())
        assert "is not writable: Permission denied" in _failure_line(out)


@pytest.mark.parametrize("case", ["env", "missing-file", "bad-toml", "unknown"])
def test_invalid_settings(tmp_path: Path, case: str) -> None:
    args, env = ["serve", "--data-dir", str(tmp_path)], _env()
    if case == "env":
        env["RELAY_PORT"] = "eighty"
        expected = "relay: setting port (RELAY_PORT): invalid literal"
    elif case == "missing-file":
        args += ["--config", str(tmp_path / "nope.toml")]
        expected = f"relay: cannot read the settings file {tmp_path / 'nope.toml'}: No such file or directory"
    elif case == "bad-toml":
        (tmp_path / "bad.toml").write_text("port = [\n")
        args += ["--config", str(tmp_path / "bad.toml")]
        expected = f"relay: the settings file {tmp_path / 'bad.toml'} is not valid TOML"
    else:
        (tmp_path / "typo.toml").write_text("prot = 8080\n")
        args += ["--config", str(tmp_path / "typo.toml")]
        expected = f"relay: unknown settings in {tmp_path / 'typo.toml'}: prot"
    out = _relay(args, env)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(expected), out.stderr


def test_postgresql_unreachable(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://relay:hunter2-secret@127.0.0.1:{port}/relay"
    out = _relay(["serve", "--port", "0", "--data-dir", str(tmp_path)], _env(RELAY_DATABASE_URL=url))
    line = _failure_line(out)
    assert out.returncode == 1
    assert line.startswith(f"relay: database postgresql://relay@127.0.0.1:{port}/relay: cannot connect to "
                           f"PostgreSQL at 127.0.0.1:{port}/relay: connection refused")
    assert line.endswith("(database_url: RELAY_DATABASE_URL in the environment)")
    assert "hunter2" not in out.stderr + out.stdout


@pytest.fixture(scope="module")
def password_postgres() -> Iterator[str]:
    """A PostgreSQL cluster that checks passwords (scram-sha-256): user ``postgres``, password ``right-one``."""
    root = Path(tempfile.mkdtemp(prefix="relay-pgpw-"))
    pwfile = root / "pw"
    pwfile.write_text("right-one\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    port = free_port()
    data = root / "data"
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "scram-sha-256",
                                 f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
    opts = f"-h 127.0.0.1 -p {port} -k {root} -F -c fsync=off"
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"),
                                 "-w", "-t", "60", "start"]), check=True, capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_wrong_password(tmp_path: Path, password_postgres: str) -> None:
    url = f"postgresql://postgres:wrong-one@{password_postgres}/postgres"
    out = _relay(["serve", "--port", "0", "--data-dir", str(tmp_path)], _env(RELAY_DATABASE_URL=url))
    line = _failure_line(out)
    assert out.returncode == 1
    assert line.startswith(f"relay: database postgresql://postgres@{password_postgres}/postgres: cannot connect")
    assert "authentication failed" in line and "check the user and password in database_url" in line
    assert "wrong-one" not in out.stderr + out.stdout
    # the same server with the right password starts (the test above is about the password, not the cluster)
    good = _env(RELAY_DATABASE_URL=f"postgresql://postgres:right-one@{password_postgres}/postgres", RELAY_PORT="0")
    server = Server([], good, tmp_path, tmp_path)
    try:
        assert server.get("/readyz") == (200, {"status": "ready", "database": "postgresql"})
    finally:
        assert server.stop() == 0
