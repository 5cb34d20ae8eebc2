"""deploy/kubernetes.yaml against the Kubernetes schemas (kubernetes-validate bundles them: nothing is
downloaded), and consistent with relay and the image deploy/Dockerfile builds."""

from __future__ import annotations

import json

import yaml

from relay.settings import load_settings
from tests.deploy.helpers import DEPLOY, KNOWN_ENV, SETTING_RE, VERSION, check_startup, run, tool, uncovered
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
    # media: the worker's one UDP port, on the node (hostNetwork: containerPort = hostPort = the port)
    assert env["RELAY_ICE_MUX"] == "true" and "RELAY_ICE_PORT_MIN" not in env and "RELAY_ICE_PORT_MAX" not in env
    udp = [p for p in relay["ports"] if p["protocol"] == "UDP"]
    assert udp == [{"name": "ice", "containerPort": int(env["RELAY_ICE_UDP_PORT"]),
                    "hostPort": int(env["RELAY_ICE_UDP_PORT"]), "protocol": "UDP"}]
    assert int(env["RELAY_ICE_UDP_PORT"]) == 50000
    assert env["RELAY_FILE_STORAGE"] == "database"
    from_pod_ip = {e["name"] for e in relay["env"] if e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                   == "status.podIP"}
    assert {"RELAY_HOST", "RELAY_ICE_HOST_ADDRESSES"} <= from_pod_ip  # the node's address only, not every bridge
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


def _self_signed(tmp_path):  # noqa: ANN001, ANN202
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = tmp_path / "server.crt"
    key_pem = tmp_path / "server.key"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert_pem, key_pem


def test_the_node_ip_script_against_an_api_server(tmp_path) -> None:  # noqa: ANN001
    """The init container's script, run as is (its two paths pointed at temporary files) against a
    local HTTPS stand-in of the API server: token sent, CA checked, ExternalIP written, or nothing."""
    import http.server
    import ssl
    import subprocess
    import sys
    import threading

    cert_pem, key_pem = _self_signed(tmp_path)
    token = "sa-token-" + "t" * 20
    nodes = {"node-nat": [{"type": "InternalIP", "address": "10.0.0.5"}, {"type": "ExternalIP", "address": "203.0.113.7"}],
             "node-public": [{"type": "InternalIP", "address": "198.51.100.9"}]}
    seen: list[tuple[str, str]] = []

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append((self.path, self.headers.get("Authorization", "")))
            name = self.path.rsplit("/", 1)[-1]
            if self.headers.get("Authorization") != f"Bearer {token}" or name not in nodes:
                self.send_response(403)
                self.end_headers()
                return
            body = json.dumps({"kind": "Node", "status": {"addresses": nodes[name]}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Api)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_pem, key_pem)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        init = next(c for c in _pod("Deployment/relay")["initContainers"] if c["name"] == "node-public-ip")
        sa = tmp_path / "sa"
        sa.mkdir()
        (sa / "token").write_text(token + "\n")
        out = tmp_path / "node.toml"
        script = (init["command"][2].replace("/var/run/secrets/kubernetes.io/serviceaccount", str(sa))
                  .replace("/run/relay/node.toml", str(out)))

        def run_for(node: str, ca: str) -> subprocess.CompletedProcess[str]:
            (sa / "ca.crt").write_text(ca)
            env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(server.server_port),
                   "NODE_NAME": node, "PATH": "/usr/bin:/bin"}
            return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)

        result = run_for("node-nat", cert_pem.read_text())
        assert result.returncode == 0, result.stderr
        assert out.read_text() == 'ice_public_ip = "203.0.113.7"\n'
        assert load_settings(out, environ={}).ice_public_ip == "203.0.113.7"
        assert seen[-1] == ("/api/v1/nodes/node-nat", f"Bearer {token}")

        result = run_for("node-public", cert_pem.read_text())
        assert result.returncode == 0, result.stderr
        assert out.read_text() == "" and load_settings(out, environ={}).ice_public_ip == ""

        # another CA: the API server's certificate is refused, the pod does not start with a guess
        (tmp_path / "other").mkdir()
        other_cert, _ = _self_signed(tmp_path / "other")
        out.unlink()
        result = run_for("node-nat", other_cert.read_text())
        assert result.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in result.stderr
        assert not out.exists()
    finally:
        server.shutdown()
        server.server_close()


def test_relay_pod_settings_pass_the_start_up_checks(tmp_path) -> None:  # noqa: ANN001
    """The relay container's settings as the pod gets them (its env, the Secret, the init container's
    node.toml) load and pass what relay serve checks at start: no per-call range beside ice_mux."""
    docs = _docs()
    relay = next(c for c in _pod("Deployment/relay")["containers"] if c["name"] == "relay")
    environ = dict(docs["Secret/relay"]["stringData"])
    for e in relay["env"]:  # fieldRef values (status.podIP) are the node's address at run time
        environ[e["name"]] = e["value"] if "value" in e else "10.0.0.5"
    node_toml = tmp_path / "node.toml"
    node_toml.write_text('ice_public_ip = "203.0.113.7"\n')
    args = relay["args"]
    settings = load_settings(node_toml if "--config" in args else None, environ=environ)
    assert settings.ice_mux and settings.ice_udp_port == 50000 and settings.ice_port_min == 0
    assert settings.ice_host_addresses == ["10.0.0.5"]
    check_startup(settings)
