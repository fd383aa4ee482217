"""Files read from Go modules at run time: prometheus-operator's, Argo Workflows' and Kubeflow
Pipelines' CRDs, kwok's stages.

Nothing of them is copied into the repository. `go mod download` fetches a module into the
control plane's module cache (checked against the Go checksum database) and returns its
directory; the kwok version is the one go.mod pins for the kwok binary.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from controlplane.build import MAIN_MODULE, cache_dir, go_binary, go_env

# The CRDs kube-prometheus-stack installs (ServiceMonitor, PrometheusRule, ...).
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
CRD_DIR = "example/prometheus-operator-crd"
# Kubeflow Pipelines runs on Argo Workflows: the pipeline's Role grants rights on Argo's
# WorkflowTaskResult, which `kubectl auth can-i` can only resolve once the CRD is installed.
ARGO_WORKFLOWS = "github.com/argoproj/argo-workflows/v3@v3.6.10"
ARGO_CRD = "manifests/base/crds/minimal/argoproj.io_workflowtaskresults.yaml"
# The Workflow CRD as Argo's install applies it (`minimal`: its `full` CRDs are for editors, and
# today's API servers refuse their schemas); Argo's own validation is in kfp-compile, as in KFP.
ARGO_WORKFLOW_CRD = "manifests/base/crds/minimal/argoproj.io_workflows.yaml"
# KFP's recurring runs are ScheduledWorkflows; the version is the one controlplane/kfp-compiler
# builds KFP's compiler from.
KFP_SCHEDULEDWORKFLOW_CRD = "manifests/kustomize/base/pipeline/cluster-scoped/scheduled-workflow-crd.yaml"
# The stages `kwokctl` gives a cluster by default: nodes become Ready at once and keep a lease,
# pods start Running and Ready at once, deleted pods go away.
KWOK_STAGES = ("kustomize/stage/node/fast/node-initialize.yaml",
               "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
               "kustomize/stage/pod/fast/pod-ready.yaml", "kustomize/stage/pod/fast/pod-complete.yaml",
               "kustomize/stage/pod/fast/pod-delete.yaml")


def download(module: str, cwd: Path | None = None) -> Path:
    """The directory of `module` (path@version, or a path whose version go.mod in `cwd` pins)."""
    result = subprocess.run([go_binary(), "mod", "download", "-json", module], cwd=cwd or cache_dir(),
                            env=go_env(cache_dir()), capture_output=True, text=True, timeout=600)
    try:
        info = json.loads(result.stdout)
    except ValueError:
        info = {"Error": result.stderr.strip() or "no output"}
    if result.returncode != 0 or "Error" in info:
        raise SystemExit(f"go mod download {module} failed: {info.get('Error')}")
    return Path(info["Dir"])


def prometheus_operator_crds(kinds: tuple[str, ...] = ("servicemonitors", "prometheusrules", "alertmanagerconfigs")) -> list[Path]:
    cache_dir().mkdir(parents=True, exist_ok=True)
    root = download(PROMETHEUS_OPERATOR)
    return [root / CRD_DIR / f"monitoring.coreos.com_{kind}.yaml" for kind in kinds]


def argo_workflowtaskresult_crd() -> Path:
    cache_dir().mkdir(parents=True, exist_ok=True)
    return download(ARGO_WORKFLOWS) / ARGO_CRD


def argo_crds() -> list[Path]:
    """Every CRD of Argo Workflows (minimal schemas), as its workflow controller watches them all."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    return sorted((download(ARGO_WORKFLOWS) / Path(ARGO_CRD).parent).glob("argoproj.io_*.yaml"))


def argo_workflow_crd() -> Path:
    cache_dir().mkdir(parents=True, exist_ok=True)
    return download(ARGO_WORKFLOWS) / ARGO_WORKFLOW_CRD


def kfp_module(kfp_go_mod: Path) -> Path:
    """KFP's module source, at the version `kfp_go_mod` requires."""
    found = re.search(r"^\s*(?:require\s+)?github\.com/kubeflow/pipelines (v\S+)", kfp_go_mod.read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit(f"{kfp_go_mod}: no `require github.com/kubeflow/pipelines <version>` line")
    cache_dir().mkdir(parents=True, exist_ok=True)
    return download(f"github.com/kubeflow/pipelines@{found.group(1)}")


def kfp_scheduledworkflow_crd(kfp_go_mod: Path) -> Path:
    """KFP's ScheduledWorkflow CRD, from the KFP module version `kfp_go_mod` requires."""
    return kfp_module(kfp_go_mod) / KFP_SCHEDULEDWORKFLOW_CRD


def kwok_stages() -> list[Path]:
    root = download("sigs.k8s.io/kwok", cwd=MAIN_MODULE)
    return [root / stage for stage in KWOK_STAGES]
