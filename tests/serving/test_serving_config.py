"""TF Serving's config files parse as the protos TF Serving reads, and agree with names and params."""
from __future__ import annotations

import re

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from flywheel import names, params
from serving import tf_serving


def test_models_config_parses_and_serves_the_pushed_model():
    config = text_format.Parse(tf_serving.MODELS_CONFIG.read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == params.load().push.model_name == names.DEFAULT_MODEL_NAME
    assert model.base_path == f"{tf_serving.MOUNTED_MODEL_REPOSITORY}/{model.name}"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.latest.num_versions == 1


def test_batching_and_monitoring_configs_have_the_fields_tf_serving_reads():
    # tensorflow-serving-api ships no BatchingParameters / MonitoringConfig protos, so check the text.
    batching = tf_serving.BATCHING_CONFIG.read_text()
    for field in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        assert re.search(rf"^{field} {{ value: \d+ }}$", batching, re.M), field
    monitoring = tf_serving.MONITORING_CONFIG.read_text()
    assert "enable: true" in monitoring and f'path: "{tf_serving.METRICS_PATH}"' in monitoring


def test_command_line_points_at_the_three_files():
    args = tf_serving.command_line()
    for path in tf_serving.CONFIG_FILES:
        assert any(a.endswith(f"{tf_serving.MOUNTED_CONFIG_DIR}/{path.name}") for a in args)
    assert "--rest_api_port=8501" in args and "--port=8500" in args and "--enable_batching=true" in args
