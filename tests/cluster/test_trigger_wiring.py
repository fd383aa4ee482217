"""The trigger's manifests agree with each other, with the alert rules and with the code: the
AlertmanagerConfig routes exactly the alerts params.yaml names to the trigger's Service in the
overlay's namespace, on the port and path the service listens on."""
from __future__ import annotations

import urllib.parse

import pytest
import yaml

from flywheel import names, params
from tests.support.cluster import OVERLAYS, ROOT, containers, find
from trigger import service

RULES = ROOT / names.ALERT_RULES_FILE


@pytest.fixture(params=OVERLAYS)
def objects(request, rendered):
    return rendered[request.param]


def _arg(container: dict, name: str) -> str:
    return next(a.split("=", 1)[1] for a in container["args"] if a.startswith(f"--{name}="))


def test_alertmanager_config_routes_the_trigger_alerts_to_the_trigger_service(objects):
    config = find(objects, "AlertmanagerConfig", "flywheel-trigger")
    route = config["spec"]["route"]
    (matcher,) = route["matchers"]
    assert matcher["name"] == "alertname" and matcher["matchType"] == "=~"
    assert set(matcher["value"].split("|")) == set(params.load().trigger.alerts)
    rule_names = {r.get("alert") for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert set(params.load().trigger.alerts) <= rule_names
    (receiver,) = config["spec"]["receivers"]
    assert receiver["name"] == route["receiver"]
    url = urllib.parse.urlparse(receiver["webhookConfigs"][0]["url"])
    svc = find(objects, "Service", "flywheel-trigger")
    host, namespace, _ = url.hostname.split(".", 2)
    assert host == svc["metadata"]["name"] and namespace == svc["metadata"]["namespace"]
    assert url.path == service.WEBHOOK
    (port,) = svc["spec"]["ports"]
    assert url.port == port["port"]
    trigger = containers(find(objects, "Deployment", "flywheel-trigger"))["trigger"]
    assert {p["name"]: p["containerPort"] for p in trigger["ports"]}[port["targetPort"]] == int(_arg(trigger, "port"))


def test_trigger_reads_its_kfp_endpoint_and_token_from_the_secret(objects):
    deployment = find(objects, "Deployment", "flywheel-trigger")
    trigger = containers(deployment)["trigger"]
    env = {e["name"]: e for e in trigger["env"]}
    secret = find(objects, "Secret", "flywheel-trigger-kfp")
    token_dir = env["KF_PIPELINES_SA_TOKEN_PATH"]["value"].rsplit("/", 1)[0]
    assert _arg(trigger, "kfp-host-file") == f"{token_dir}/host"   # both keys of the Secret, as files
    mount = next(m for m in trigger["volumeMounts"] if m["mountPath"] == token_dir)
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert not secret.get("data") and not secret.get("stringData")   # no secret in the repository
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"


def test_only_the_monitoring_namespace_reaches_the_trigger(objects):
    policy = find(objects, "NetworkPolicy", "flywheel-trigger")
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
