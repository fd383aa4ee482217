"""ML Metadata's gRPC service for the KFP backend (controlplane/mlmd_service.py): MLMD's own gRPC
client, in the service's environment, records what KFP's driver and launcher record for one task
(a run's contexts, its execution, the artifact it outputs, the event between them) and reads it
back by context and by lineage; MLMD's errors arrive as its typed errors. A service that mangled
a message, dropped a field or answered the wrong method fails here."""
from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from controlplane import kfp, modules

SERVICE = Path(kfp.__file__).resolve().parent / "mlmd_service.py"
MLMD_GO_PACKAGE = '"github.com/kubeflow/pipelines/third_party/ml-metadata/go/ml_metadata"'

# Run by .venv-mlmd's Python: ml_metadata is not in Flywheel's environment.
CLIENT = textwrap.dedent("""
    import json, sys
    import grpc
    from ml_metadata import errors
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb, metadata_store_service_pb2 as service

    host, port = sys.argv[1].rsplit(":", 1)
    store = metadata_store.MetadataStore(pb.MetadataStoreClientConfig(host=host, port=int(port)))
    out = {}

    run_type = pb.ContextType(name="system.PipelineRun")
    run_type.properties["pipeline_root"] = pb.STRING
    pipeline_type = pb.ContextType(name="system.Pipeline")
    execution_type = pb.ExecutionType(name="system.ContainerExecution")
    model_type = pb.ArtifactType(name="system.Model")
    model_type.properties["version"] = pb.INT
    type_ids = [store.put_context_type(run_type), store.put_context_type(pipeline_type),
                store.put_execution_type(execution_type), store.put_artifact_type(model_type)]
    out["types_again"] = store.put_context_type(run_type) == type_ids[0]     # idempotent, as KFP relies on

    pipeline = pb.Context(type_id=type_ids[1], name="flywheel-training")
    run = pb.Context(type_id=type_ids[0], name="run-1")
    run.properties["pipeline_root"].string_value = "s3://mlpipeline/v2/artifacts"
    pipeline_id, run_id = store.put_contexts([pipeline, run])
    pipeline.id, run.id = pipeline_id, run_id
    store.put_parent_contexts([pb.ParentContext(child_id=run_id, parent_id=pipeline_id)])

    execution = pb.Execution(type_id=type_ids[2], name="train", last_known_state=pb.Execution.COMPLETE)
    execution.custom_properties["display_name"].string_value = "train"
    model = pb.Artifact(type_id=type_ids[3], uri="s3://mlpipeline/v2/artifacts/run-1/train/model",
                        state=pb.Artifact.LIVE)
    model.properties["version"].int_value = 7
    output = pb.Event(type=pb.Event.OUTPUT)
    output.path.steps.add().key = "model"
    execution_id, (model_id,), _ = store.put_execution(execution, [(model, output)], [pipeline, run])

    out["executions"] = [e.name for e in store.get_executions_by_context(run_id)]
    out["artifacts"] = [(a.uri, a.properties["version"].int_value) for a in store.get_artifacts_by_context(run_id)]
    out["events"] = [(e.execution_id == execution_id, e.artifact_id == model_id, pb.Event.Type.Name(e.type),
                      e.path.steps[0].key) for e in store.get_events_by_execution_ids([execution_id])]
    out["parents"] = [c.name for c in store.get_parent_contexts_by_context(run_id)]
    out["by_name"] = store.get_context_by_type_and_name("system.PipelineRun", "run-1").properties[
        "pipeline_root"].string_value
    out["missing"] = store.get_artifacts_by_id([10 ** 9])

    conflicting = pb.ArtifactType(name="system.Model")
    conflicting.properties["version"] = pb.STRING
    try:
        store.put_artifact_type(conflicting)
    except errors.AlreadyExistsError:
        out["conflict"] = "AlreadyExistsError"
    try:
        store.put_execution(pb.Execution(type_id=10 ** 9), [], [])
    except errors.StatusError as error:
        out["unknown_type"] = type(error).__name__

    # A method of the service that the wheel's store does not wrap
    channel = grpc.insecure_channel(sys.argv[1])
    call = channel.unary_unary("/ml_metadata.MetadataStoreService/GetLineageGraph",
                               request_serializer=service.GetLineageGraphRequest.SerializeToString,
                               response_deserializer=service.GetLineageGraphResponse.FromString)
    try:
        call(service.GetLineageGraphRequest(), timeout=10)
    except grpc.RpcError as error:
        out["unwrapped"] = error.code().name
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def mlmd_python() -> str:
    if not kfp.MLMD_PYTHON.exists():
        pytest.fail(f"{kfp.MLMD_PYTHON} is missing: `make mlmd` builds it (`make test` does)")
    return str(kfp.MLMD_PYTHON)


@pytest.fixture(scope="module")
def mlmd(plane, mlmd_python) -> str:
    return plane.start_mlmd_service(kfp.MLMD_PYTHON)


def test_mlmd_client_records_a_task_and_reads_it_back(mlmd, mlmd_python):
    done = subprocess.run([mlmd_python, "-c", CLIENT, mlmd], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["types_again"] is True
    assert out["executions"] == ["train"]
    assert out["artifacts"] == [["s3://mlpipeline/v2/artifacts/run-1/train/model", 7]]
    assert out["events"] == [[True, True, "OUTPUT", "model"]]
    assert out["parents"] == ["flywheel-training"]
    assert out["by_name"] == "s3://mlpipeline/v2/artifacts"
    assert out["missing"] == []
    assert out["conflict"] == "AlreadyExistsError"
    assert out["unknown_type"] in ("NotFoundError", "InvalidArgumentError")
    assert out["unwrapped"] == "UNIMPLEMENTED"


def test_every_mlmd_method_kfps_backend_calls_is_served(mlmd_python):
    v2 = modules.kfp_module(kfp.MODULE / "go.mod") / "backend" / "src" / "v2"
    # The files that use MLMD's Go client (cacheutils' `svc` is KFP's own task service).
    sources = [text for path in v2.rglob("*.go") if not path.name.endswith("_test.go")
               for text in [path.read_text()] if MLMD_GO_PACKAGE in text]
    called = {name for text in sources for name in re.findall(r"\bsvc\.([A-Z]\w+)\(", text)}
    served = set(json.loads(subprocess.run([mlmd_python, str(SERVICE), "--served"], capture_output=True,
                                           text=True, check=True, timeout=60).stdout))
    assert len(called) >= 15, sorted(called)        # the client's calls were found at all
    assert called <= served, f"called by KFP, not served: {sorted(called - served)}"
