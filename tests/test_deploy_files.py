"""The shipped deployment files (deploy/): what a vendor runs must match what the service is.

Checked without network and without the linters (yamllint, checkov, kamailio -c, which
deploy/README.md runs by hand): every container runs as a non-root user, the probes ask
/livez and /readyz, call nodes drain on stop and get time for it, no password sits in a
ConfigMap or in compose.yaml, the compose services are the node roles, Prometheus scrapes
every node, the Grafana dashboard graphs only metrics the service exports, and the
settings files load with the service's own settings classes.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from dashboards.config import OperationsSettings
from dashboards.metrics import LATENCY_BUCKETS, MetricsSink
from faq.city import load_city
from telephony.config import TelephonySettings
from voicebot.config import Settings, load_settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBE = DEPLOY / "kubernetes"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
SECRET_WORDS = re.compile(r"password|secret|passwd|token|credential", re.IGNORECASE)


def _kube_objects() -> list[dict]:
    objects = []
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return objects


def _kube(kind: str, name: str) -> dict:
    found = [o for o in _kube_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _voicebot_services(compose: dict) -> dict[str, dict]:
    """Compose services that run `voicebot serve` (they have a VOICEBOT_ROLE)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if "VOICEBOT_ROLE" in service.get("environment", {})
    }


def _grace_s(args: list[str]) -> float:
    return float(args[args.index("--grace") + 1])


def _containerfile_user(path: Path) -> str:
    users = [line.split()[1] for line in path.read_text().splitlines() if line.startswith("USER ")]
    assert users, f"{path.name}: no USER"
    return users[-1]


def test_every_kubernetes_container_runs_as_non_root() -> None:
    workloads = [o for o in _kube_objects() if o["kind"] in WORKLOAD_KINDS]
    assert {o["metadata"]["name"] for o in workloads} == {
        "voicebot-call",
        "voicebot-web",
        "voicebot-edge",
    }
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 10000
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert context["runAsNonRoot"] is True, where
            assert context.get("runAsUser", pod["securityContext"]["runAsUser"]) != 0, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where


def test_every_compose_service_and_image_runs_as_non_root() -> None:
    for name, service in _compose()["services"].items():
        user = str(service.get("user", ""))
        assert user, f"{name}: no user"
        assert user.split(":")[0] not in {"0", "root"}, name
        assert service.get("cap_drop") == ["ALL"], name
    for containerfile in (DEPLOY / "container").glob("*Containerfile"):
        assert _containerfile_user(containerfile) not in {"0", "root"}, containerfile.name


def test_probes_ask_livez_and_readyz() -> None:
    for name in ("voicebot-call", "voicebot-web"):
        kind = "StatefulSet" if name == "voicebot-call" else "Deployment"
        (container,) = _kube(kind, name)["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez", name
        if "startupProbe" in container:
            assert container["startupProbe"]["httpGet"]["path"] == "/livez", name
    image = (DEPLOY / "container" / "Containerfile").read_text()
    healthcheck = image[image.index("\nHEALTHCHECK") :].split("\n\n")[0]
    assert "/livez" in healthcheck
    for name, service in _voicebot_services(_compose()).items():
        assert "/livez" in " ".join(service["healthcheck"]["test"]), name


def test_call_nodes_drain_and_get_time_for_it() -> None:
    pod = _kube("StatefulSet", "voicebot-call")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    grace = _grace_s(container["args"])
    pre_stop = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert "kill -TERM 1" in pre_stop  # SIGTERM is the drain; the hook waits for the exit
    # Callers finish (grace), the rest go to staff (grace), then the workers stop.
    assert pod["terminationGracePeriodSeconds"] > 2 * grace + 30
    budget = _kube("PodDisruptionBudget", "voicebot-call")
    assert (
        budget["spec"]["selector"]["matchLabels"]
        == (_kube("StatefulSet", "voicebot-call")["spec"]["selector"]["matchLabels"])
    )
    for name, service in _voicebot_services(_compose()).items():
        if service["environment"]["VOICEBOT_ROLE"] == "call":
            stop_s = float(service["stop_grace_period"].rstrip("s"))
            assert stop_s > 2 * _grace_s(service["command"]) + 30, name


def test_call_nodes_have_stable_names() -> None:
    statefulset = _kube("StatefulSet", "voicebot-call")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["VOICEBOT_NODE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["VOICEBOT_ROLE"]["value"] == "call"
    assert container["args"][container["args"].index("--role") + 1] == "call"
    assert statefulset["spec"]["serviceName"] == "voicebot-call"


def _toml_from_configmap() -> str:
    return _kube("ConfigMap", "voicebot-config")["data"]["voicebot.toml"]


def _assert_no_secret_in_settings(text: str, where: str) -> None:
    settings = tomllib.loads(text)
    for section in settings.values():
        if isinstance(section, dict):
            secret_keys = [k for k in section if SECRET_WORDS.search(k)]
            assert not secret_keys, f"{where}: {secret_keys}"
    url = settings.get("database", {}).get("url")
    if url:
        assert urlsplit(url.replace("+psycopg", "")).password is None, where


def test_no_secret_value_in_a_configmap_or_compose_file() -> None:
    for config_map in (o for o in _kube_objects() if o["kind"] == "ConfigMap"):
        for key, value in config_map["data"].items():
            assert not SECRET_WORDS.search(key), key
            if key.endswith(".toml"):
                _assert_no_secret_in_settings(value, f"ConfigMap {key}")
    _assert_no_secret_in_settings(
        (DEPLOY / "compose" / "voicebot.toml").read_text(), "compose/voicebot.toml"
    )
    # Passwords in compose.yaml are only references to the .env file.
    for name, service in _compose()["services"].items():
        for key, value in service.get("environment", {}).items():
            if SECRET_WORDS.search(key):
                assert re.fullmatch(r"\$\{\w+(:\?[^}]*)?\}", str(value)), f"{name}: {key}"
    for line in (DEPLOY / "compose.env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#") and SECRET_WORDS.search(line.split("=")[0]):
            assert line.split("=", 1)[1] == "CHANGE-ME", line


def test_secret_holds_placeholders_and_every_reference_exists() -> None:
    secret = _kube("Secret", "voicebot-secrets")
    assert set(secret["stringData"].values()) == {"CHANGE-ME"}
    referenced = set()
    for workload in (o for o in _kube_objects() if o["kind"] in WORKLOAD_KINDS):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "voicebot-secrets"
                    referenced.add(ref["key"])
                elif SECRET_WORDS.search(env["name"]):
                    pytest.fail(f"{env['name']} is not taken from the Secret")
    assert referenced == set(secret["stringData"])


def test_settings_files_load_with_the_service_settings(tmp_path: Path) -> None:
    sources = {
        "compose": (DEPLOY / "compose" / "voicebot.toml").read_text(),
        "kubernetes": _toml_from_configmap(),
    }
    for where, text in sources.items():
        path = tmp_path / f"{where}.toml"
        path.write_text(text)
        core = load_settings(path, Settings)
        telephony = load_settings(path, TelephonySettings)
        operations = load_settings(path, OperationsSettings)
        assert str(core.faq.city_file) == "/etc/voicebot/city.yaml", where
        assert operations.database.url.startswith("postgresql+psycopg://"), where
        assert operations.mqtt.host, where
        assert telephony.sip.rtp_port_max > telephony.sip.rtp_port_min, where
    city_text = (DEPLOY / "config" / "city.yaml").read_text()
    assert _kube("ConfigMap", "voicebot-config")["data"]["city.yaml"] == city_text
    assert load_city(DEPLOY / "config" / "city.yaml").city_name


def test_compose_services_are_the_node_roles() -> None:
    compose = _compose()
    nodes = _voicebot_services(compose)
    roles = sorted(s["environment"]["VOICEBOT_ROLE"] for s in nodes.values())
    assert roles == ["call", "call", "web"]
    names = [s["environment"]["VOICEBOT_NODE"] for s in nodes.values()]
    assert len(set(names)) == len(names)
    for name, service in nodes.items():
        role = service["environment"]["VOICEBOT_ROLE"]
        assert service["command"][service["command"].index("--role") + 1] == role, name
    assert {"kamailio", "postgres", "mosquitto", "prometheus", "grafana"} <= set(
        compose["services"]
    )
    # The edge's node list is exactly the call nodes, at the addresses they listen on.
    listed = re.findall(
        r"^1 sip:([\d.]+):(\d+) .*duid=([\w-]+)$",
        (DEPLOY / "compose" / "voicebot-nodes.list").read_text(),
        flags=re.MULTILINE,
    )
    calls = {
        s["environment"]["VOICEBOT_NODE"]: s["environment"]["VOICEBOT_SIP__HOST"]
        for s in nodes.values()
        if s["environment"]["VOICEBOT_ROLE"] == "call"
    }
    sip_port = tomllib.loads((DEPLOY / "compose" / "voicebot.toml").read_text())["sip"]["port"]
    assert {duid: ip for ip, _, duid in listed} == calls
    assert {int(port) for _, port, _ in listed} == {sip_port}
    for name, service in nodes.items():
        if service["environment"]["VOICEBOT_ROLE"] == "call":
            address = service["networks"]["voicebot"]["ipv4_address"]
            assert service["environment"]["VOICEBOT_SIP__HOST"] == address, name
    edge = compose["services"]["kamailio"]
    assert edge["environment"]["EDGE_IP"] == edge["networks"]["voicebot"]["ipv4_address"]


def test_prometheus_scrapes_every_node() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "voicebot"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    scraped = {
        target: group["labels"]["node"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    nodes = {
        f"{s['networks']['voicebot']['ipv4_address']}:8080": s["environment"]["VOICEBOT_NODE"]
        for s in _voicebot_services(_compose()).values()
    }
    assert scraped == nodes


def _exported_series() -> set[str]:
    """Every series name /metrics can carry (a counter with no sample yet included)."""
    names = set()
    for family in MetricsSink().registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "count", "sum", "created")}
        else:
            names.add(family.name)
    return names


def test_grafana_dashboard_graphs_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "voicebot.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for expr in exprs for m in re.findall(r"\bvoicebot_\w+", expr)}
    exported = _exported_series()
    assert used <= exported, used - exported
    # Every metric family appears on the dashboard.
    families = {f.name for f in MetricsSink().registry.collect()}
    assert {f for f in families if any(u.startswith(f) for u in used)} == families
    # A bucket boundary named in a query is one the histogram has, spelt as exported.
    for le in {le for expr in exprs for le in re.findall(r'le="([^"]+)"', expr)}:
        assert float(le) in LATENCY_BUCKETS and le == str(float(le))
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
    assert uids == {datasource["datasources"][0]["uid"]}


def test_sip_edge_configmap_is_the_shipped_kamailio_config() -> None:
    config = _kube("ConfigMap", "voicebot-edge-config")["data"]
    assert config["kamailio.cfg"] == (DEPLOY / "kamailio" / "kamailio.cfg").read_text()
    statefulset = _kube("StatefulSet", "voicebot-call")
    sip_port = tomllib.loads(_toml_from_configmap())["sip"]["port"]
    expected = {
        f"sip:voicebot-call-{i}.voicebot-call.taxline-voicebot.svc.cluster.local:{sip_port}"
        for i in range(statefulset["spec"]["replicas"])
    }
    listed = set(re.findall(r"^1 (sip:\S+)", config["voicebot-nodes.list"], re.MULTILINE))
    assert listed == expected


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    manifests = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
