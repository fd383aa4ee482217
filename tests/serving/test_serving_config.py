"""TF Serving's config files parse as the protos TF Serving reads, and agree with names and params."""
from __future__ import annotations

import re

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from flywheel import model_repository, names, params
from serving import tf_serving


def test_the_config_tf_serving_reads_is_the_repositorys_and_parses(tmp_path):
    # The server is pointed at <mounted repository>/<model>/models.config ...
    name = params.load().push.model_name
    assert name == names.DEFAULT_MODEL_NAME
    assert (f"--model_config_file={tf_serving.MOUNTED_MODEL_REPOSITORY}/{name}/{names.TF_SERVING_CONFIG}"
            in tf_serving.command_line())
    # ... which is what a label change writes there: labelled versions, not the newest.
    for version in (1, 2, 3):
        (tmp_path / name / str(version)).mkdir(parents=True)
    model_repository.set_label(str(tmp_path), name, names.PRODUCTION, 1, "test")
    model_repository.set_label(str(tmp_path), name, names.CANARY, 3, "test")
    written = (tmp_path / name / names.TF_SERVING_CONFIG).read_text()
    config = text_format.Parse(written, model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == name and model.model_platform == "tensorflow"
    assert model.base_path == f"{tf_serving.MOUNTED_MODEL_REPOSITORY}/{name}"
    assert sorted(model.model_version_policy.specific.versions) == [1, 3]
    assert dict(model.version_labels) == {names.PRODUCTION: 1, names.CANARY: 3}


def test_the_repository_config_follows_the_labels(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "4").mkdir()
    model_repository.set_label(str(tmp_path), "m", names.PRODUCTION, 1, "test")
    model_repository.set_label(str(tmp_path), "m", names.CANARY, 4, "test")
    written = (tmp_path / "m" / names.TF_SERVING_CONFIG).read_text()
    config = text_format.Parse(written, model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.base_path == f"{tf_serving.MOUNTED_MODEL_REPOSITORY}/m"
    assert list(model.model_version_policy.specific.versions) == [1, 4]
    assert dict(model.version_labels) == {names.PRODUCTION: 1, names.CANARY: 4}


def test_batching_and_monitoring_configs_have_the_fields_tf_serving_reads():
    # tensorflow-serving-api ships no BatchingParameters / MonitoringConfig protos, so check the text.
    batching = tf_serving.BATCHING_CONFIG.read_text()
    for field in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        assert re.search(rf"^{field} {{ value: \d+ }}$", batching, re.M), field
    monitoring = tf_serving.MONITORING_CONFIG.read_text()
    assert "enable: true" in monitoring and f'path: "{tf_serving.METRICS_PATH}"' in monitoring


def test_command_line_points_at_the_config_files():
    args = tf_serving.command_line()
    for path in tf_serving.CONFIG_FILES:
        assert any(a.endswith(f"{tf_serving.MOUNTED_CONFIG_DIR}/{path.name}") for a in args)
    assert "--rest_api_port=8501" in args and "--port=8500" in args and "--enable_batching=true" in args
