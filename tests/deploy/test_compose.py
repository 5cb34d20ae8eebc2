"""deploy/docker-compose.yml against the Compose specification's schema, and consistent with relay:
settings names, the .env.example, coturn sharing relay's TURN secret, private ranges denied."""

from __future__ import annotations

import re

import yaml

from relay.settings import load_settings
from tests.deploy.helpers import DEPLOY, KNOWN_ENV, SETTING_RE, check_startup, run, tool, uncovered

COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_specification(tmp_path) -> None:  # noqa: ANN001
    check = tool("check-jsonschema")
    result = run([check, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace:"))
    result = run([check, "--builtin-schema", "vendor.compose-spec", str(broken)])
    assert result.returncode != 0 and "stop_grace" in result.stdout  # the schema really is checked


def _env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def test_every_variable_is_in_env_example_or_has_a_default() -> None:
    example = _env_example()
    for m in re.finditer(r"\$\{([A-Z0-9_]+)(:?[-?])?([^}]*)\}", COMPOSE.read_text()):
        name, op = m.group(1), m.group(2) or ""
        assert name in example or op.endswith("-"), f"${{{name}}} is neither in .env.example nor defaulted"
    assert all(n in KNOWN_ENV for n in example if n.startswith("RELAY_")), sorted(set(example) - KNOWN_ENV)


def test_relay_service_settings_are_real_and_complete() -> None:
    relay = _compose()["services"]["relay"]
    names = set(relay["environment"])
    assert names <= KNOWN_ENV, sorted(names - KNOWN_ENV)
    for needed in ("RELAY_DATABASE_URL", "RELAY_TURN_SECRET", "RELAY_URL_SIGNING_KEY", "RELAY_ICE_UDP_PORT",
                   "RELAY_ICE_PUBLIC_IP", "RELAY_TURN_URLS"):
        assert needed in names, needed
    assert set(SETTING_RE.findall(COMPOSE.read_text())) <= KNOWN_ENV
    assert relay["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / ".." / relay["build"]["dockerfile"]).exists()
    assert relay["command"][0] == "serve"  # the image's ENTRYPOINT is relay
    # the worker's one UDP port is published with the same number outside and inside (candidates carry it)
    udp = [p for p in relay["ports"] if p.endswith("/udp")]
    assert udp == ["${RELAY_ICE_UDP_PORT:-50000}:${RELAY_ICE_UDP_PORT:-50000}/udp"]
    assert relay["environment"]["RELAY_ICE_UDP_PORT"] == "${RELAY_ICE_UDP_PORT:-50000}"
    assert relay["environment"]["RELAY_ICE_MUX"] == "true"
    assert "postgres:5432" in relay["environment"]["RELAY_DATABASE_URL"]
    assert relay["depends_on"]["postgres"]["condition"] == "service_healthy"
    grace = int(relay["stop_grace_period"].rstrip("s"))
    assert grace > int(_env_example()["RELAY_SHUTDOWN_TIMEOUT_S"])


def test_coturn_shares_relays_secret_and_denies_private_ranges() -> None:
    args = _compose()["services"]["coturn"]["command"]
    assert "--use-auth-secret" in args
    assert "--static-auth-secret=${RELAY_TURN_SECRET:?set RELAY_TURN_SECRET in .env}" in args
    assert "RELAY_TURN_SECRET" in _compose()["services"]["relay"]["environment"]
    assert uncovered(args) == []
    min_port = next(a for a in args if a.startswith("--min-port="))
    assert "TURN_PORT_MIN" in min_port and "TURN_PORT_MIN" in _env_example()


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}`` against ``env`` (the .env file)."""
    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3)
        if env.get(name):
            return env[name]
        assert not op.endswith("?"), f"${{{name}}} is required: {arg}"
        return arg if op.endswith("-") else ""
    return re.sub(r"\$\{([A-Z0-9_]+)(:?[-?])?([^}]*)\}", one, value)


def test_relay_service_environment_passes_the_start_up_checks() -> None:
    """The relay container's environment, as Compose hands it over with .env.example as .env, loads
    as relay settings and passes what relay serve checks at start (ice_mux with no per-call range),
    and the published UDP port is the one relay advertises."""
    example = _env_example()
    relay = _compose()["services"]["relay"]
    environ = {name: _interpolate(str(value), example) for name, value in relay["environment"].items()}
    settings = load_settings(None, environ=environ)
    assert settings.ice_mux and settings.ice_udp_port == int(example["RELAY_ICE_UDP_PORT"]) == 50000
    assert settings.ice_public_ip == example["PUBLIC_IP"]
    check_startup(settings)
    udp = next(_interpolate(p, example) for p in relay["ports"] if p.endswith("/udp"))
    assert udp == f"{settings.ice_udp_port}:{settings.ice_udp_port}/udp"
