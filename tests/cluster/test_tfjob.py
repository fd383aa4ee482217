"""The train step's TFJob (manifests/training/) against the Kubeflow Training Operator's own CRD.

The CRD comes from the operator's Go module at the version pinned here (`go mod download`, the
control plane's module cache, checked against Go's checksum database); nothing of it is committed.
The schema is made strict (an unknown field is an error, as a typo would be silently pruned by
the API server otherwise), and the job must run what the code expects: the operator's container
name, the train job's entrypoint and flags, as many workers as it says, the restricted Pod
Security profile."""
from __future__ import annotations

import copy
import json
import subprocess

import jsonschema
import pytest
import yaml

from components import train_job
from controlplane import modules
from flywheel.params import ROOT
from tests.cluster.test_manifests_validate import _strict

TRAINING_OPERATOR = "github.com/kubeflow/training-operator@v1.8.1"
TFJOB_CRD = "manifests/base/crds/kubeflow.org_tfjobs.yaml"


@pytest.fixture(scope="module")
def tfjob() -> dict:
    rendered = subprocess.run(["kubectl", "kustomize", str(ROOT / "manifests" / "training")], capture_output=True,
                              text=True, check=True).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    assert [o["kind"] for o in objects] == ["TFJob"]
    return objects[0]


@pytest.fixture(scope="module")
def schema() -> dict:
    modules.cache_dir().mkdir(parents=True, exist_ok=True)
    crd = yaml.safe_load((modules.download(TRAINING_OPERATOR) / TFJOB_CRD).read_text())
    assert crd["spec"]["names"]["kind"] == "TFJob"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    found = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    _strict(found)
    found["properties"]["metadata"] = {"type": "object"}   # the API server's part, not the CRD's
    return found


def _errors(schema: dict, obj: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft4Validator(schema).iter_errors(obj)]


def test_the_tfjob_is_valid_against_the_operators_crd(tfjob, schema):
    assert tfjob["apiVersion"] == "kubeflow.org/v1"
    assert not _errors(schema, tfjob)


def test_the_strict_schema_rejects_a_misspelt_field(tfjob, schema):
    broken = copy.deepcopy(tfjob)
    broken["spec"]["tfReplicaSpecs"]["Worker"]["replica"] = 2
    assert any("replica" in e for e in _errors(schema, broken))


def test_the_workers_run_the_train_job_as_the_code_expects(tfjob):
    worker = tfjob["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] >= 2 and set(tfjob["spec"]["tfReplicaSpecs"]) == {"Worker"}   # worker 0 is the chief
    pod = worker["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "tensorflow"          # the operator sets TF_CONFIG on this container
    assert container["command"] == ["python", "-m", "components.train_job"]
    assert "TF_CONFIG" not in {e["name"] for e in container.get("env", [])}
    args = train_job.parser().parse_args(container["args"])     # the entrypoint accepts every flag
    assert args.engine == "streaming" and json.loads(args.params)["epochs"] >= 1
    assert container["image"].startswith("ghcr.io/flywheel-mlops/flywheel-component:") and "@sha256:" in container["image"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
