"""deploy/Dockerfile: hadolint-clean, every RUN step goes through deploy/install.sh, non-root,
`relay serve` as entry point, a health check on /healthz."""

from __future__ import annotations

import json
import re
import shlex

from tests.deploy.helpers import DEPLOY, ROOT, run, tool

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_passes_and_would_catch_mistakes(tmp_path) -> None:  # noqa: ANN001
    hadolint = tool("hadolint")
    result = run([hadolint, "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    result = run([hadolint, "--no-color", str(bad)])
    assert result.returncode != 0 and "DL3008" in result.stdout  # unpinned apt, proving it lints


def test_every_run_step_calls_install_sh() -> None:
    runs = [args for word, args in instructions() if word == "RUN"]
    assert len(runs) >= 3
    for args in runs:
        assert "install.sh " in args, args
    steps = " ".join(runs)
    for step in ("packages build", "install.sh build /wheels", "packages runtime",
                 "install.sh runtime /wheels /opt/relay/venv"):
        assert step in steps, step
    assert steps.count("--mount=type=cache,target=/root/.cache/pip") == 2  # pip's wheel cache is reused


def test_copy_sources_exist_and_build_is_multi_stage() -> None:
    ins = instructions()
    froms = [args for word, args in ins if word == "FROM"]
    assert [f.split()[-1] for f in froms] == ["build", "runtime"]
    for word, args in ins:
        if word == "COPY" and "--from" not in args:
            for src in shlex.split(args)[:-1]:
                assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"


def test_runtime_is_non_root_with_relay_serve_and_a_healthcheck() -> None:
    ins = instructions()
    runtime = ins[[i for i, (w, _a) in enumerate(ins) if w == "FROM"][-1]:]
    users = [args for word, args in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    entry = json.loads(next(args for word, args in runtime if word == "ENTRYPOINT"))
    cmd = json.loads(next(args for word, args in runtime if word == "CMD"))
    assert entry + cmd == ["relay", "serve"]
    health = next(args for word, args in runtime if word == "HEALTHCHECK")
    assert "/healthz" in health and "CMD [" in health
    env = " ".join(args for word, args in runtime if word == "ENV")
    assert "/opt/relay/venv/bin" in env and "RELAY_HOST=0.0.0.0" in env


def test_install_sh_names_real_debian_packages() -> None:
    """The packages the image installs exist under these names (scripts/test.sh installs them here)."""
    for stage in ("build", "runtime"):
        result = run(["bash", str(DEPLOY / "install.sh"), "packages", stage, "--print"])
        assert result.returncode == 0, result.stderr
        names = result.stdout.split()
        assert names
        query = run(["dpkg-query", "-W", "-f", "${Package} ${Status}\n", *names])
        assert query.returncode == 0, query.stderr
        assert query.stdout.count("install ok installed") == len(names), query.stdout
    assert {"libopus0", "libespeak-ng1"} <= set(run(["bash", str(DEPLOY / "install.sh"), "packages", "runtime",
                                                    "--print"]).stdout.split())
    assert run(["bash", str(DEPLOY / "install.sh"), "nonsense"]).returncode == 2
