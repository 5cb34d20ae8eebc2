"""deploy/ examples stay consistent with the code: settings names, probes, coturn mode."""

from __future__ import annotations

import re
from pathlib import Path

from relay.settings import ENV_PREFIX, Settings, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KNOWN_ENV = {env for _n, env, _d, _doc, _s in Settings.field_specs()}


def test_example_toml_loads() -> None:
    settings = load_settings(DEPLOY / "relay.toml", environ={})
    assert settings.turn_urls and settings.log_format == "json"


def test_env_names_are_real_settings() -> None:
    for name in ("kubernetes.yaml", "relay.service"):
        names = set(re.findall(r"\b(RELAY_[A-Z0-9_]+)\b", (DEPLOY / name).read_text()))
        assert names <= KNOWN_ENV, f"{name}: unknown settings {sorted(names - KNOWN_ENV)}"
        assert all(n.startswith(ENV_PREFIX) for n in names)
    assert len(set(re.findall(r"\b(RELAY_[A-Z0-9_]+)\b", (DEPLOY / "kubernetes.yaml").read_text()))) >= 8


def test_kubernetes_probes_hit_health_endpoints() -> None:
    text = (DEPLOY / "kubernetes.yaml").read_text()
    assert "path: /readyz" in text and "path: /healthz" in text


def test_coturn_uses_auth_secret() -> None:
    lines = {ln.strip() for ln in (DEPLOY / "coturn.conf").read_text().splitlines() if not ln.startswith("#")}
    assert "use-auth-secret" in lines and any(ln.startswith("static-auth-secret=") for ln in lines)
