"""The whole DAG with kfp.local's DockerRunner, every task in the component image, as
`make run RUNNER=docker` runs it and a cluster would: span 1 is pushed as production, span 2 is
evaluated against it, infra-validated in the image's own model server beside the production
version, and published as the canary. Small spans and few epochs keep it to a few minutes."""
import json
import os

import pytest

from flywheel import model_repository as repo
from flywheel import names, params
from flywheel.params import DataParams, IngestParams
from tools import datagen
from pipelines import runner
from pipelines.training_pipeline import arguments as pipeline_arguments

ROWS = 2000
pytestmark = pytest.mark.slow


def test_the_dag_runs_in_the_image_to_the_push_and_to_the_canary(docker_client, images, tmp_path):
    spans = tmp_path / "spans"
    datagen.write_spans(DataParams(rows_per_span=ROWS, spans=2), spans, IngestParams())
    models = tmp_path / "models"
    # The gates on the model are the pipeline tests' subject; here a small model on 2,000 rows
    # must not be refused for being a little worse than span 1's, so that span 2 reaches the push.
    settings = params.override(params.load(), {"train.epochs": 4, "train.min_steps": 0,
                                               "evaluate.allowed_regression": 1.0,
                                               "evaluate.slice_allowed_regression": 1.0,
                                               "push.model_repository": str(models)})
    for directory in (tmp_path, spans):
        directory.chmod(0o755)             # the tasks run as the caller, but the image's user reads too
    runs = []
    for span in (1, 2):
        arguments = pipeline_arguments(settings, str(spans / datagen.span_file(span)))
        runs.append(runner.run_local(arguments, str(tmp_path / "root"), runner="docker"))
        assert runs[-1].succeeded, runs[-1].error
    first, second = runs
    print(f"\nspan 1: {first.infra.get('reason')}\nspan 2: {second.infra.get('reason')}")
    assert first.pushed and first.pushed_version == 1 and first.pushed_label == names.PRODUCTION
    assert first.infra["blessed"] and "answered as evaluated" in first.infra["reason"]
    assert second.compared_with == 1
    # Infra validation in the container timed the candidate beside the production version.
    assert second.infra["blessed"], second.infra["reason"]
    assert "per request pair" in second.infra["reason"] and isinstance(second.infra.get("production_p99_ms"), float)
    assert second.pushed, (second.blessing_reason, second.push_reason)
    assert second.pushed_version == 2 and second.pushed_label == names.CANARY
    assert repo.versions(str(models), "taxi_tips") == [1, 2]
    validation = json.loads((models / "taxi_tips" / "2" / names.EXTRA_DIR / names.INFRA_VALIDATION).read_text())
    assert validation["server"] == "development model server" and validation["max_abs_difference"] <= 1e-5
    assert os.stat(models / "taxi_tips" / "2").st_uid == os.getuid()
