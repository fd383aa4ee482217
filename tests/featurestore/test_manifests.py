"""The feature store's addon (manifests/addons/featurestore) builds, every object is valid for the
pinned Kubernetes version (strict), and its wiring agrees with the rest: the feature server's
Service port is the one the sidecar's flag and `make feast-serve` use, the ConfigMap is the
feature_store.yaml the server and the job read, Redis is the online store it names."""
from __future__ import annotations

import kubernetes_validate
import yaml

from tests.support.cluster import KUBERNETES_VERSION, MANIFESTS, find, kustomize_build, require_tool

ADDON = MANIFESTS / "addons" / "featurestore"


def test_the_addon_is_valid_and_wired():
    require_tool("kubectl", "install kubectl (Debian package kubernetes-client)")
    objects = kustomize_build(ADDON)
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    assert {o["kind"] for o in objects} == {"ConfigMap", "Service", "Deployment", "CronJob", "PersistentVolumeClaim"}

    config = find(objects, "ConfigMap")
    store = yaml.safe_load(config["data"]["feature_store.yaml"])
    redis = find(objects, "Service", "flywheel-feature-redis")
    assert store["online_store"] == {"type": "redis", "connection_string": f"flywheel-feature-redis:{redis['spec']['ports'][0]['port']}"}
    repo_store = yaml.safe_load((MANIFESTS.parent / "featurestore/repo/feature_store.yaml").read_text())
    assert store["project"] == repo_store["project"]

    server = find(objects, "Deployment", "flywheel-feature-server")
    (container,) = server["spec"]["template"]["spec"]["containers"]
    port = container["args"][container["args"].index("--port") + 1]
    assert find(objects, "Service", "flywheel-feature-server")["spec"]["ports"][0]["port"] == int(port)
    assert f"flywheel-feature-server:{port}" in (ADDON / "kustomization.yaml").read_text()
    assert f"FEAST_PORT ?= {port}" in (MANIFESTS.parent / "Makefile").read_text()

    job = find(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for pod in (server["spec"]["template"]["spec"], job):
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["config"]["configMap"]["name"] == config["metadata"]["name"]
        assert volumes["featurestore"]["persistentVolumeClaim"]["claimName"] == "flywheel-featurestore"
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert "/etc/feast/feature_store.yaml" in c["command"], c["name"]
            assert {"name": "FLYWHEEL_FEATURE_DATA", "value": "/var/lib/feast/data"} in c["env"]
