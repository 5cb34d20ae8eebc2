"""The plain-VM files of deploy/ (systemd unit, relay.toml, coturn.conf, prometheus.yml) stay
consistent with the code: settings names, drain time, coturn mode. (Was tests/foundation/test_deploy.py.)"""

from __future__ import annotations

import configparser

import yaml

from relay.settings import ENV_PREFIX, load_settings
from tests.deploy.helpers import DEPLOY, KNOWN_ENV, SETTING_RE, uncovered


def test_example_toml_loads() -> None:
    settings = load_settings(DEPLOY / "relay.toml", environ={})
    assert settings.turn_urls and settings.log_format == "json"
    assert 0 < settings.ice_port_min <= settings.ice_port_max


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
    """The ports table of deploy/README.md names the ranges the files really open."""
    readme = (DEPLOY / "README.md").read_text()
    k8s = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())}
    relay = k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in relay["env"]}
    assert f"{env['RELAY_ICE_PORT_MIN']}-{env['RELAY_ICE_PORT_MAX']}" in readme
    example = dict(ln.split("=", 1) for ln in (DEPLOY / ".env.example").read_text().splitlines()
                   if ln and not ln.startswith("#"))
    assert f"{example['RELAY_ICE_PORT_MIN']}-{example['RELAY_ICE_PORT_MAX']}" in readme
    assert f"{example['TURN_PORT_MIN']}-{example['TURN_PORT_MAX']}" in readme
    coturn = k8s["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--listening-port=3478" in coturn and "| 3478 |" in readme
    assert "--workers" in readme  # the one-line change when multi-worker serve lands
