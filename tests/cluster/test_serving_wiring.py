"""The parts of the rendered manifests that must agree with each other and with the code.

HPA -> Deployment, PDB/Service/NetworkPolicy selectors -> pod labels, probes -> the sidecar's
health endpoints, sidecar <-> TF Serving ports and model name, TF Serving flags and config
files <-> serving/tf_serving.py, ServiceMonitor -> metrics Service ports, HPA custom metric <->
prometheus-adapter rule, Pod Security "restricted" on every container.
"""
from __future__ import annotations

import re

import pytest
import yaml

from tests.support.cluster import MANIFESTS, OVERLAYS, ROOT, containers, find
from flywheel import names, params, serving_logs
from serving import tf_serving

SIDECAR_PORT = 8080
FEEDBACK_PORT = 8081
METRICS_PORT = 9090


def _quantity_bytes(q: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    assert m, f"bad quantity {q}"
    return float(m.group(1)) * units.get(m.group(2), 1)


def _port_number(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    numbers = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in numbers, f"container {container['name']} has no port named {port}"
    return numbers[port]


def _matches(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


@pytest.fixture(params=OVERLAYS)
def objects(request, rendered):
    return rendered[request.param]


def test_hpa_scales_the_serving_deployment(objects):
    hpa = find(objects, "HorizontalPodAutoscaler")
    deployment = find(objects, "Deployment", "flywheel-serving")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    behavior = hpa["spec"]["behavior"]
    # Set on purpose: fast up, slow (stabilised) down.
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] < behavior["scaleDown"]["stabilizationWindowSeconds"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    pods_metrics = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert [m["pods"]["metric"]["name"] for m in pods_metrics] == ["flywheel_requests_per_second"]


def test_resource_metric_has_requests_to_divide_by(objects):
    """HPA CPU utilisation is relative to requests: every container needs a CPU request."""
    hpa = find(objects, "HorizontalPodAutoscaler")
    if any(m["type"] == "Resource" for m in hpa["spec"]["metrics"]):
        for c in containers(find(objects, "Deployment", "flywheel-serving")).values():
            assert "cpu" in c["resources"]["requests"], c["name"]


def test_prometheus_adapter_rule_yields_the_hpa_metric():
    values = yaml.safe_load((MANIFESTS / "addons/prometheus-adapter/values.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    series = re.match(r"^(\w+)\{", rule["seriesQuery"]).group(1)
    assert series == "flywheel_requests_total"
    # prometheus-adapter applies the Go regexp; ${1} is Python's \1 here.
    exposed = re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"), series)
    assert exposed == "flywheel_requests_per_second"
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


def test_pdb_service_and_networkpolicy_select_the_serving_pods(objects):
    labels = find(objects, "Deployment", "flywheel-serving")["spec"]["template"]["metadata"]["labels"]
    assert _matches(find(objects, "PodDisruptionBudget")["spec"]["selector"], labels)
    assert _matches(find(objects, "NetworkPolicy", "flywheel-serving")["spec"]["podSelector"], labels)
    for service in (o for o in objects if o["kind"] == "Service"
                    and o["metadata"]["name"].startswith("flywheel-serving")):
        assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items()), service["metadata"]["name"]


def test_client_service_reaches_only_the_sidecar(objects):
    """Predictions and feedback, both through the sidecar; nothing reaches TF Serving directly."""
    service = find(objects, "Service", "flywheel-serving")
    sidecar = containers(find(objects, "Deployment", "flywheel-serving"))["sidecar"]
    assert [_port_number(sidecar, p["targetPort"]) for p in service["spec"]["ports"]] == [SIDECAR_PORT, FEEDBACK_PORT]


def test_probes_hit_the_health_endpoints(objects):
    pod = containers(find(objects, "Deployment", "flywheel-serving"))
    sidecar, tfs = pod["sidecar"], pod["tf-serving"]
    ready = sidecar["readinessProbe"]["httpGet"]
    assert ready["path"] == "/healthz/ready" and _port_number(sidecar, ready["port"]) == SIDECAR_PORT
    for probe in ("livenessProbe", "startupProbe"):
        get = sidecar[probe]["httpGet"]
        assert get["path"] == "/healthz/live" and _port_number(sidecar, get["port"]) == SIDECAR_PORT
    assert _port_number(tfs, tfs["startupProbe"]["tcpSocket"]["port"]) == tf_serving.REST_PORT
    assert _port_number(tfs, tfs["livenessProbe"]["tcpSocket"]["port"]) == tf_serving.GRPC_PORT
    get = tfs["readinessProbe"]["httpGet"]
    assert _port_number(tfs, get["port"]) == tf_serving.REST_PORT
    assert get["path"] == f"/v1/models/{names.DEFAULT_MODEL_NAME}"
    # Liveness must not kill a pod that is still loading its model.
    assert tfs["startupProbe"]["periodSeconds"] * tfs["startupProbe"]["failureThreshold"] >= 120


def _flags(args: list[str]) -> dict[str, str]:
    return {name: value for name, _, value in (a.removeprefix("--").partition("=") for a in args)}


def test_sidecar_and_tf_serving_agree_on_ports_and_model(objects):
    pod = containers(find(objects, "Deployment", "flywheel-serving"))
    sidecar, tfs = pod["sidecar"], pod["tf-serving"]
    assert sidecar["command"] == ["python3", "-m", "monitoring"]
    flags = _flags(sidecar["args"])
    assert flags["host"] == "0.0.0.0"   # the sidecar binds loopback unless told otherwise
    assert int(flags["port"]) == SIDECAR_PORT == _port_number(sidecar, "http")
    assert int(flags["feedback-port"]) == FEEDBACK_PORT == _port_number(sidecar, "feedback")
    assert int(flags["metrics-port"]) == METRICS_PORT == _port_number(sidecar, "metrics")
    assert flags["upstream"] == f"http://127.0.0.1:{tf_serving.REST_PORT}"
    assert flags["model-name"] == names.DEFAULT_MODEL_NAME
    assert flags["model-repository"] == tf_serving.MOUNTED_MODEL_REPOSITORY
    # TF Serving runs with exactly the flags serving/tf_serving.py documents.
    assert tfs["args"] == tf_serving.command_line()
    assert _port_number(tfs, "tfs-rest") == tf_serving.REST_PORT
    assert _port_number(tfs, "tfs-grpc") == tf_serving.GRPC_PORT
    # Both containers see the model repository at the same path, read-only...
    for c in (sidecar, tfs):
        mount = next(m for m in c["volumeMounts"] if m["name"] == "model-repository")
        assert mount["mountPath"] == tf_serving.MOUNTED_MODEL_REPOSITORY and mount["readOnly"] is True
    # ...except the sidecar's log destination: <repository>/<model>/logs, read-write.
    (logs,) = [m for m in sidecar["volumeMounts"] if m["name"] == "model-repository" and not m.get("readOnly")]
    assert logs["mountPath"] == flags["log-destination"]
    assert logs["subPath"] == f"{names.DEFAULT_MODEL_NAME}/{serving_logs.LOGS_DIR}"
    assert not any(m["name"] == "model-repository" and not m.get("readOnly") for m in tfs["volumeMounts"])
    # readOnly on the volume itself would make that one writable mount read-only too.
    repository_volume = next(v for v in find(objects, "Deployment", "flywheel-serving")["spec"]["template"]["spec"]["volumes"]
                             if v["name"] == "model-repository")
    assert not repository_volume["persistentVolumeClaim"].get("readOnly")
    # The feedback token: a file from the (optional) Secret, never an environment variable.
    secret_volume = next(v for v in find(objects, "Deployment", "flywheel-serving")["spec"]["template"]["spec"]["volumes"]
                         if v["name"] == "sidecar-token")
    assert secret_volume["secret"]["secretName"] == find(objects, "Secret", "flywheel-sidecar-token")["metadata"]["name"]
    assert secret_volume["secret"]["optional"] is True
    token_mount = next(m for m in sidecar["volumeMounts"] if m["name"] == "sidecar-token")
    assert flags["token-file"].startswith(token_mount["mountPath"] + "/") and token_mount["readOnly"] is True
    assert not find(objects, "Secret", "flywheel-sidecar-token").get("data") and not find(objects, "Secret", "flywheel-sidecar-token").get("stringData")
    assert "feedback-token-required" in flags   # no token, no feedback: `make deploy` generates one


def test_tf_serving_config_map_holds_serving_config_files(objects):
    deployment = find(objects, "Deployment", "flywheel-serving")
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tfserving-config")
    config_map = find(objects, "ConfigMap", volume["configMap"]["name"])
    assert config_map["data"] == {f.name: f.read_text() for f in tf_serving.CONFIG_FILES}
    mount = next(m for m in containers(deployment)["tf-serving"]["volumeMounts"] if m["name"] == "tfserving-config")
    assert mount["mountPath"] == tf_serving.MOUNTED_CONFIG_DIR
    # The model config is the repository's (rewritten at every label change), on the volume
    # TF Serving mounts the repository from.
    repository_mount = next(m for m in containers(deployment)["tf-serving"]["volumeMounts"]
                            if m["name"] == "model-repository")
    assert repository_mount["mountPath"] == tf_serving.MOUNTED_MODEL_REPOSITORY
    assert f"--model_config_file={tf_serving.models_config()}" in containers(deployment)["tf-serving"]["args"]
    assert tf_serving.METRICS_PATH in config_map["data"][tf_serving.MONITORING_CONFIG.name]


def test_service_monitor_scrapes_sidecar_and_tf_serving(objects):
    monitor = find(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = next(s for s in objects if s["kind"] == "Service"
                   and _matches(monitor["spec"]["selector"], s["metadata"].get("labels", {})))
    pod = containers(find(objects, "Deployment", "flywheel-serving"))
    port_targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    paths = {}
    for endpoint in monitor["spec"]["endpoints"]:
        target = port_targets[endpoint["port"]]
        owner = next(c for c in pod.values() if target in {p["name"] for p in c.get("ports", [])})
        paths[(owner["name"], _port_number(owner, target))] = endpoint["path"]
    assert paths == {("sidecar", METRICS_PORT): "/metrics",
                     ("tf-serving", tf_serving.REST_PORT): tf_serving.METRICS_PATH}


def test_network_policy_admits_each_client_to_its_own_port_only(objects):
    policy = find(objects, "NetworkPolicy", "flywheel-serving")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    by_port = {p["port"]: rule.get("from") for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert sorted(by_port) == ["feedback", "http", "metrics", "tfs-rest"]
    assert by_port["http"] is None                                     # the model's clients, wherever they are
    assert by_port["feedback"] == [{"namespaceSelector": {},
                                    "podSelector": {"matchLabels": {"flywheel.io/feedback-client": "true"}}}]
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert by_port["metrics"] == by_port["tfs-rest"] == monitoring


@pytest.mark.parametrize("deployment", ["flywheel-serving", "flywheel-trigger"])
def test_pod_security_restricted_and_no_token(objects, deployment):
    spec = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    writable = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    for c in spec["containers"]:
        ctx = c["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False, c["name"]
        assert ctx["readOnlyRootFilesystem"] is True, c["name"]
        assert ctx["capabilities"]["drop"] == ["ALL"], c["name"]
        assert ctx.get("runAsUser", spec["securityContext"]["runAsUser"]) >= 10000, c["name"]
        # A read-only root filesystem needs a writable /tmp.
        assert any(m["mountPath"] == "/tmp" and m["name"] in writable for m in c["volumeMounts"]), c["name"]
        assert "@sha256:" in c["image"], f"{c['name']} image not pinned by digest: {c['image']}"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{c['name']} {kind}"
    serving_sa = find(objects, "ServiceAccount", spec["serviceAccountName"])
    assert serving_sa["automountServiceAccountToken"] is False
    namespace = find(objects, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def _pre_stop_sleep_s(container: dict) -> float:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", f"{container['name']}: preStop is not a sleep: {command}"
    return float(command[1])


def test_tf_serving_outlives_the_sidecar_that_forwards_to_it(objects):
    """Kubernetes sends SIGTERM to every container of a pod at once, after each one's preStop.
    TF Serving stops at once on it, so without a longer preStop of its own the sidecar would
    forward the requests of its last seconds to a closed port."""
    deployment = find(objects, "Deployment", "flywheel-serving")
    pod = containers(deployment)
    mon = params.load().monitoring
    sidecar_forwards_s = _pre_stop_sleep_s(pod["sidecar"]) + mon.closing_s + mon.upstream_timeout_s
    assert _pre_stop_sleep_s(pod["tf-serving"]) > sidecar_forwards_s
    sidecar_stops_s = sidecar_forwards_s + 2 * mon.drain_timeout_s
    grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace_s > max(sidecar_stops_s, _pre_stop_sleep_s(pod["tf-serving"]))


def test_every_container_has_requests_and_limits_and_room_for_two_versions(objects):
    pod = containers(find(objects, "Deployment", "flywheel-serving"))
    for c in pod.values():
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{c['name']} {kind}"
    memory = pod["tf-serving"]["resources"]
    # During a version switch TF Serving holds the old and the new model.
    assert _quantity_bytes(memory["limits"]["memory"]) >= 2 * _quantity_bytes(memory["requests"]["memory"])


def test_pipeline_service_account_is_bound_to_its_role(objects):
    binding = find(objects, "RoleBinding", "flywheel-pipeline")
    role = find(objects, "Role", binding["roleRef"]["name"])
    (subject,) = binding["subjects"]
    assert subject["kind"] == "ServiceAccount" and find(objects, "ServiceAccount", subject["name"])
    assert subject["namespace"] == binding["metadata"]["namespace"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        if "secrets" in rule["resources"]:
            assert rule.get("resourceNames"), "secrets only by name"


def test_gpu_overlay_requests_a_gpu_on_gpu_nodes(rendered):
    spec = find(rendered["gpu"], "Deployment", "flywheel-serving")["spec"]["template"]["spec"]
    tfs = containers(find(rendered["gpu"], "Deployment", "flywheel-serving"))["tf-serving"]
    assert tfs["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert tfs["image"].startswith("tensorflow/serving:2.16.1-gpu@sha256:")
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    for overlay in ("dev", "prod"):
        for c in containers(find(rendered[overlay], "Deployment", "flywheel-serving")).values():
            assert "nvidia.com/gpu" not in c["resources"]["limits"], f"{overlay} must not ask for GPUs"


def test_dashboards_are_provisioned_from_the_json_files(objects):
    dashboards = {o["metadata"]["name"]: o for o in objects
                  if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"}
    files = sorted((ROOT / "monitoring/dashboards").glob("*.json"))
    assert len(dashboards) == len(files) == 2
    provisioned = {k: v for cm in dashboards.values() for k, v in cm["data"].items()}
    assert provisioned == {f.name: f.read_text() for f in files}


def test_prometheus_rule_is_the_rules_file(objects):
    rule = find(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    source = yaml.safe_load((ROOT / names.ALERT_RULES_FILE).read_text())
    assert rule["spec"]["groups"] == source["groups"]
