"""The paths Flywheel builds are the paths its servers recognise: the builders and the route
grammar of flywheel/serving_protocol.py agree, as TF Serving's REST API has them."""
from __future__ import annotations

import json

import pytest

from flywheel import serving_protocol as protocol


@pytest.mark.parametrize("version, label", [(None, None), (3, None), (None, "canary")])
def test_built_paths_match_the_routes(version, label):
    predict = protocol.predict_path("taxi_tips", version, label)
    routed = protocol.PREDICT_ROUTE.match(predict)
    assert routed["name"] == "taxi_tips" and routed["label"] == label
    assert routed["version"] == (None if version is None else str(version))
    assert protocol.MODEL_ROUTE.match(predict)["verb"] == "predict"
    assert protocol.MODEL_ROUTE.match(protocol.metadata_path("taxi_tips", version, label))["metadata"]
    assert protocol.MODEL_ROUTE.match(protocol.model_path("taxi_tips", version, label))["verb"] is None
    assert protocol.PLAIN_TARGET.fullmatch(predict)


def test_the_sidecar_routes_only_versions_it_can_serve():
    negative = "/v1/models/taxi_tips/versions/-1:predict"
    assert protocol.PREDICT_ROUTE.match(negative) is None             # upstream answers it
    assert protocol.MODEL_ROUTE.match(negative)["version"] == "-1"    # the model server says "not found"
    assert protocol.PREDICT_ROUTE.match("/v1/models/taxi_tips/metadata") is None
    assert not protocol.PLAIN_TARGET.fullmatch("/v1/models/taxi%20tips:predict")


def test_one_step_version_path_is_the_general_one():
    assert protocol.version_predict_path("m", 7) == protocol.predict_path("m", 7) == "/v1/models/m/versions/7:predict"


def test_error_body_round_trip():
    assert json.loads(protocol.error_bytes("bad")) == protocol.error_body("bad") == {"error": "bad"}
    assert protocol.error_message(protocol.error_bytes("bad")) == "bad"
    assert protocol.error_message(b"<html>502</html>") == "<html>502</html>"
