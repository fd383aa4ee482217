"""The flywheel closed on loopback (pipelines/loop.py, `make loop` with short windows): a served
version, drifted traffic with ground truth, a real Prometheus evaluating Flywheel's rules, a real
Alertmanager calling the trigger, a real pipeline run on the span built from the logs, the new
version served, its lineage naming the alert and the span. About 3-4 minutes."""
from __future__ import annotations

import json

import pytest

from flywheel import model_repository as repo
from flywheel import params
from pipelines import lineage, loop
from tests.support.servers import MODEL_NAME, push_version
from tests.support.taxi_rows import make_frame

pytestmark = pytest.mark.slow


def test_drift_alert_retrains_and_the_new_version_names_its_trigger(tmp_path, exported_versions, capsys):
    repository = tmp_path / "model_repository"
    push_version(exported_versions, repository, 1)
    traffic = tmp_path / "shifted.csv"
    make_frame(1500, seed=5, miles_scale=1.8, cash_share=0.65).to_csv(traffic, index=False)
    # The test is about the loop, not the model: any candidate is blessed (the evaluator's gates
    # have their own tests), so weakly learnable test data cannot make it flaky.
    settings = params.override(params.load(), {"loop.traffic_rows": 1500, "loop.min_labeled_rows": 600,
                                               "loop.epochs": 3, "loop.timeout_s": 150.0})
    result = loop.run(str(repository), MODEL_NAME, str(traffic), "big_tipper", settings, tmp_path / "loop",
                      run_sets=("evaluate.allowed_regression=1.0", "evaluate.min_auc=0.0", "evaluate.baselines_gate=false",
                                "evaluate.slice_features=[]", "evaluate.slice_crosses=[]"), span_dir=str(tmp_path / "spans"),
                      progress=lambda line: None)
    assert not result.error, "\n".join(result.lines()) + f"\nlogs: {tmp_path / 'loop'}"
    assert result.new_version == 2 and repo.production_version(str(repository), MODEL_NAME) == 2
    order = ["alert firing", "trigger notified", "run started", "run finished", "v2 served", "drift gauges fell"]
    times = [next(t for name, t in result.marks.items() if name.startswith(stage)) for stage in order]
    assert times == sorted(times)
    # One run for the alert episode however often Alertmanager repeated it.
    assert [e["event"] for e in result.events].count("run_started") == 1
    # The lineage record: the alert, its labels, and the span from the logs (with its counts).
    record = lineage.record_of(str(repository), MODEL_NAME, 2)
    trigger = record["trigger"]
    assert trigger["kind"] == "alert" and trigger["alert"] in settings.trigger.alerts
    assert trigger["labels"]["model"] == MODEL_NAME and trigger["labels"]["namespace"] == loop.NAMESPACE
    assert record["steps"]["ingest/examples"]["data_path"] == result.span
    assert lineage.main(["--model-repository", str(repository), "--model-name", MODEL_NAME,
                         "--picture", str(tmp_path / "lineage.png")]) == 0
    out = capsys.readouterr().out
    assert f"started by alert {trigger['alert']}" in out and result.span.rsplit("/", 1)[-1] in out
    span_built = next(e for e in result.events if e["event"] == "span_built")
    assert span_built["labeled_rows"] >= 600
    assert result.timeline and open(result.timeline, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    json.dumps(result.marks)
