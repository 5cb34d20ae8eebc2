"""deploy/install.sh as the image runs it, without Docker: `build` then `runtime` into temporary
directories, from a copy of exactly what the Dockerfile COPYs; then the installed `relay serve`
answers the Dockerfile's own HEALTHCHECK command, and stops cleanly on SIGTERM.

Slow (a Cython compile and a venv install, ~2-4 min here); pip's wheel cache (~/.cache/pip) is
reused between runs, so only the first run downloads.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.deploy.helpers import ROOT, VERSION, run
from tests.deploy.test_dockerfile import instructions

pytestmark = pytest.mark.slow

def _build_outputs(directory: str, names: list[str]) -> set[str]:
    """What deploy/Dockerfile.dockerignore keeps out: compiled objects, Cython's C and annotation files."""
    drop = {n for n in names if n == "__pycache__" or n.endswith((".so", ".pyc"))}
    if Path(directory).name == "_fast":
        drop |= {n for n in names if n.endswith((".c", ".html"))}
    return drop


def _build_context(dest: Path) -> None:
    """The files the Dockerfile's build stage COPYs, nothing else (as deploy/Dockerfile.dockerignore)."""
    for word, args in instructions():
        if word != "COPY" or "--from" in args:
            continue
        for src in shlex.split(args)[:-1]:
            path = ROOT / src
            target = dest / src
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, target, ignore=_build_outputs, dirs_exist_ok=True)
            else:
                shutil.copy2(path, target)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("deploy-install")
    src, wheels, venv = base / "src", base / "wheels", base / "venv"
    _build_context(src)
    assert not list(src.rglob("*.so")), "host build outputs leaked into the build context"
    assert (src / "relay/static/index.html").is_file()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed relay, not this checkout
    build = run(["bash", str(src / "deploy/install.sh"), "build", str(wheels)], cwd=base, env=env)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    runtime = run(["bash", str(src / "deploy/install.sh"), "runtime", str(wheels), str(venv)], cwd=base, env=env)
    assert runtime.returncode == 0, runtime.stdout[-3000:] + runtime.stderr[-3000:]
    assert "compiled kernels, libopus and espeak-ng load" in runtime.stdout
    return {"base": base, "wheels": wheels, "venv": venv, "env": env}  # type: ignore[dict-item]


def test_the_wheel_carries_the_compiled_kernels(installed: dict[str, Path]) -> None:
    wheel = next(installed["wheels"].glob("relay-*.whl"))
    assert wheel.name.startswith(f"relay-{VERSION}-")
    names = zipfile.ZipFile(wheel).namelist()
    kernels = {Path(n).name.split(".")[0] for n in names if n.startswith("relay/_fast/") and n.endswith(".so")}
    assert kernels == {p.stem for p in (ROOT / "relay/_fast").glob("*.pyx")}
    assert "relay/store/migrations/0001_core.sql" in names  # package data travels too


def test_installed_relay_runs_and_imports_from_the_venv(installed: dict[str, Path]) -> None:
    venv = installed["venv"]
    result = run([str(venv / "bin/relay"), "--help"], cwd="/", env=installed["env"])
    assert result.returncode == 0 and "serve" in result.stdout
    where = run([str(venv / "bin/python"), "-c", "import relay, relay._fast; print(relay.__file__)"], cwd="/",
                env=installed["env"])
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr


def _healthcheck_cmd() -> list[str]:
    health = next(args for word, args in instructions() if word == "HEALTHCHECK")
    return json.loads(health.split("CMD", 1)[1])


def test_installed_relay_serve_passes_the_image_healthcheck(installed: dict[str, Path]) -> None:
    venv, base = installed["venv"], installed["base"]
    port = free_port()
    env = {**installed["env"], "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "RELAY_HOST": "127.0.0.1",
           "RELAY_PORT": str(port), "RELAY_DATA_DIR": str(base / "data"), "RELAY_CONSOLE_LINK": "false",
           "RELAY_LOG_FORMAT": "json", "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1"}
    check = _healthcheck_cmd()
    assert check[0] == "python"  # resolved through PATH, as in the image: the venv's python
    assert run(check, env=env, cwd="/").returncode != 0  # nothing listening yet: the check fails
    proc = subprocess.Popen([str(venv / "bin/relay"), "serve"], env=env, cwd="/", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                    assert json.load(resp)["status"] == "ready"
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "relay serve never became ready"
                time.sleep(0.3)
        result = run(check, env=env, cwd="/")
        assert result.returncode == 0, result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
