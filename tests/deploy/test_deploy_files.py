"""The plain-VM files of deploy/ (systemd unit, relay.toml, coturn.conf, prometheus.yml) stay
consistent with the code: settings names, drain time, coturn mode. (Was tests/foundation/test_deploy.py.)"""

from __future__ import annotations

import configparser

import pytest
import yaml

from relay.settings import ENV_PREFIX, SettingsError, load_settings
from tests.deploy.helpers import DEPLOY, KNOWN_ENV, SETTING_RE, check_startup, uncovered

ICE_UDP_PORT = 50000  # the one UDP port per worker every deploy file uses (worker i: this + i)


def test_example_toml_loads_and_passes_the_start_up_checks(tmp_path) -> None:  # noqa: ANN001
    settings = load_settings(DEPLOY / "relay.toml", environ={})
    assert settings.turn_urls and settings.log_format == "json"
    assert settings.ice_mux and settings.ice_udp_port == ICE_UDP_PORT
    assert settings.ice_port_min == settings.ice_port_max == 0  # the range is the documented alternative only
    check_startup(settings)
    check_startup(load_settings(DEPLOY / "relay.toml", environ={"RELAY_WORKERS": "4"}))
    # the check really fails: the old file (range and mux together) is refused as relay serve refuses it
    both = tmp_path / "both.toml"
    both.write_text((DEPLOY / "relay.toml").read_text() + "ice_port_min = 40000\nice_port_max = 40199\n")
    with pytest.raises(SettingsError, match="ice_mux"):
        check_startup(load_settings(both, environ={}))
    # the alternative its comment documents starts too: mux off, the range, no ice_udp_port
    per_call = tmp_path / "per_call.toml"
    per_call.write_text((DEPLOY / "relay.toml").read_text().replace("ice_mux = true", "ice_mux = false")
                        .replace("ice_udp_port = 50000", "ice_port_min = 40000\nice_port_max = 40199"))
    check_startup(load_settings(per_call, environ={"RELAY_WORKERS": "4"}))


def test_env_names_are_real_settings() -> None:
    for name in ("kubernetes.yaml", "relay.service", "docker-compose.yml", ".env.example", "README.md",
                 "prometheus.yml"):
        names = set(SETTING_RE.findall((DEPLOY / name).read_text()))
        assert names <= KNOWN_ENV, f"{name}: unknown settings {sorted(names - KNOWN_ENV)}"
        assert all(n.startswith(ENV_PREFIX) for n in names)
    assert len(set(SETTING_RE.findall((DEPLOY / "kubernetes.yaml").read_text()))) >= 8


def test_systemd_unit_runs_the_install_sh_venv_and_outlives_the_drain() -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string((DEPLOY / "relay.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].startswith("/opt/relay/venv/bin/relay serve")  # deploy/README.md's install path
    assert service["User"] == "relay" and service["KillSignal"] == "SIGTERM"
    drain_s = load_settings(DEPLOY / "relay.toml", environ={}).shutdown_timeout_s
    assert int(service["TimeoutStopSec"]) > drain_s


def test_coturn_uses_auth_secret_and_denies_private_ranges() -> None:
    lines = [ln.strip() for ln in (DEPLOY / "coturn.conf").read_text().splitlines() if not ln.startswith("#")]
    assert "use-auth-secret" in lines and any(ln.startswith("static-auth-secret=") for ln in lines)
    assert uncovered(lines) == []


def test_prometheus_config_parses_and_scrapes_metrics() -> None:
    doc = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert jobs["relay"]["metrics_path"] == "/metrics"
    assert all(j["authorization"]["type"] == "Bearer" for j in jobs.values())


def test_readme_ports_match_the_manifests() -> None:
    """The ports table of deploy/README.md names the ports the files really open: relay's media on
    one UDP port per worker, the same number in relay.toml, Kubernetes, Compose and .env.example."""
    readme = (DEPLOY / "README.md").read_text()
    k8s = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())}
    relay = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in relay["env"]}
    example = dict(ln.split("=", 1) for ln in (DEPLOY / ".env.example").read_text().splitlines()
                   if ln and not ln.startswith("#"))
    toml = load_settings(DEPLOY / "relay.toml", environ={})
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["relay"]
    assert (int(env["RELAY_ICE_UDP_PORT"]) == int(example["RELAY_ICE_UDP_PORT"]) == toml.ice_udp_port
            == ICE_UDP_PORT)
    assert compose["environment"]["RELAY_ICE_UDP_PORT"] == f"${{RELAY_ICE_UDP_PORT:-{ICE_UDP_PORT}}}"
    row = next(ln for ln in readme.splitlines() if ln.startswith("| `RELAY_ICE_UDP_PORT`"))
    assert f"{ICE_UDP_PORT};" in row and f"{ICE_UDP_PORT}..{ICE_UDP_PORT}+N-1" in row and "| UDP |" in row
    for name in ("kubernetes.yaml", "docker-compose.yml", ".env.example", "relay.toml", "relay.service", "README.md"):
        text = (DEPLOY / name).read_text()  # each file says where the worker count is set what it opens
        assert f"{ICE_UDP_PORT}..{ICE_UDP_PORT}+N-1" in text, name
    # the per-call range is documented as the alternative, and set nowhere
    assert "RELAY_ICE_MUX=false" in readme and "RELAY_ICE_PORT_MIN" in readme
    assert not {"RELAY_ICE_PORT_MIN", "RELAY_ICE_PORT_MAX"} & (set(env) | set(example) | set(compose["environment"]))
    assert f"{example['TURN_PORT_MIN']}-{example['TURN_PORT_MAX']}" in readme
    coturn = k8s["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--listening-port=3478" in coturn and "| 3478 |" in readme
    assert "--workers" in readme  # the one-line change when multi-worker serve lands
