"""deploy/kubernetes.yaml against the Kubernetes schemas (kubernetes-validate bundles them: nothing is
downloaded), and consistent with relay and the image deploy/Dockerfile builds."""

from __future__ import annotations

import json

import yaml

from relay.settings import load_settings
from tests.deploy.helpers import DEPLOY, KNOWN_ENV, SETTING_RE, VERSION, run, tool, uncovered
from tests.deploy.test_dockerfile import instructions

MANIFEST = DEPLOY / "kubernetes.yaml"


def _docs() -> dict[str, dict]:
    return {d["kind"] + "/" + d["metadata"]["name"]: d for d in yaml.safe_load_all(MANIFEST.read_text())}


def _pod(kind_name: str) -> dict:
    return _docs()[kind_name]["spec"]["template"]["spec"]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_manifest_passes_the_kubernetes_schemas(tmp_path) -> None:  # noqa: ANN001
    validate = tool("kubernetes-validate")
    result = run([validate, "--strict", str(MANIFEST)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(_docs())
    broken = tmp_path / "k.yaml"
    broken.write_text(MANIFEST.read_text().replace("terminationGracePeriodSeconds: 45",
                                                   "terminationGracePeriodSeconds: soon"))
    result = run([validate, "--strict", str(broken)])
    assert result.returncode != 0  # a wrong type fails: the schemas really are checked


def test_settings_names_are_real() -> None:
    names = set(SETTING_RE.findall(MANIFEST.read_text()))
    assert names <= KNOWN_ENV, sorted(names - KNOWN_ENV)
    secret = _docs()["Secret/relay"]["stringData"]
    for needed in ("RELAY_DATABASE_URL", "RELAY_TURN_SECRET", "RELAY_URL_SIGNING_KEY", "RELAY_ADMIN_TOKEN"):
        assert needed in secret, needed


def test_relay_pod_media_probes_and_drain() -> None:
    pod = _pod("Deployment/relay")
    relay = next(c for c in pod["containers"] if c["name"] == "relay")
    env = _env(relay)
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert 0 < int(env["RELAY_ICE_PORT_MIN"]) <= int(env["RELAY_ICE_PORT_MAX"]) < 65536
    assert env["RELAY_FILE_STORAGE"] == "database"
    assert relay["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert relay["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop_s = int(relay["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + float(env["RELAY_SHUTDOWN_TIMEOUT_S"])
    assert {"secretRef": {"name": "relay"}} in relay["envFrom"]
    assert "uncovered UDP" not in MANIFEST.read_text() and "no port-range" not in MANIFEST.read_text()


def test_image_and_arguments_are_the_dockerfiles() -> None:
    pod = _pod("Deployment/relay")
    relay = next(c for c in pod["containers"] if c["name"] == "relay")
    init = next(c for c in pod["initContainers"] if c["name"] == "node-public-ip")
    assert relay["image"].endswith(f"/relay:{VERSION}") and init["image"] == relay["image"]
    entry = json.loads(next(a for w, a in instructions() if w == "ENTRYPOINT"))
    assert entry + relay["args"][:1] == ["relay", "serve"] and "command" not in relay
    user = next(a for w, a in instructions() if w == "USER").split(":")
    assert pod["securityContext"]["runAsUser"] == int(user[0]) and pod["securityContext"]["runAsNonRoot"]


def test_the_node_ip_init_container_writes_a_config_relay_loads(tmp_path) -> None:  # noqa: ANN001
    pod = _pod("Deployment/relay")
    init = next(c for c in pod["initContainers"] if c["name"] == "node-public-ip")
    script = init["command"][2]
    compile(script, "node-public-ip", "exec")  # valid Python for the image's interpreter
    relay = next(c for c in pod["containers"] if c["name"] == "relay")
    config = relay["args"][relay["args"].index("--config") + 1]
    assert f'open("{config}", "w")' in script
    # both things the script can write load as relay settings
    for text, ip in (('ice_public_ip = "203.0.113.7"\n', "203.0.113.7"), ("", "")):
        path = tmp_path / "node.toml"
        path.write_text(text)
        assert load_settings(path, environ={}).ice_public_ip == ip
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert config.startswith(mounts["run"])
    rules = _docs()["ClusterRole/relay-read-nodes"]["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]  # least privilege


def test_disruption_budget_selects_the_relay_pods() -> None:
    docs = _docs()
    pdb = docs["PodDisruptionBudget/relay"]["spec"]
    labels = docs["Deployment/relay"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] == 1


def test_coturn_shares_the_turn_secret_and_denies_private_ranges() -> None:
    coturn = _pod("DaemonSet/coturn")["containers"][0]
    secret_ref = next(e for e in coturn["env"] if e["name"] == "RELAY_TURN_SECRET")["valueFrom"]["secretKeyRef"]
    assert secret_ref == {"name": "relay", "key": "RELAY_TURN_SECRET"}
    assert "--use-auth-secret" in coturn["args"] and "--static-auth-secret=$(RELAY_TURN_SECRET)" in coturn["args"]
    assert uncovered(coturn["args"]) == []
