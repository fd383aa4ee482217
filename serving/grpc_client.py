"""Client for TF Serving's gRPC API (PredictionService.Predict, ModelService.GetModelStatus).

gRPC goes straight to TF Serving (port 8500); the monitoring sidecar proxies REST only, so gRPC
traffic is served but not logged or drift-checked (see monitoring/__init__.py).
"""
from __future__ import annotations

from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from flywheel import names


def _tf():
    import tensorflow as tf  # predict_pb2 already imports TensorFlow; this only names it
    return tf


class GrpcClient:
    def __init__(self, target: str, model_name: str, timeout_s: float = 10.0):
        self.target = target
        self.channel = grpc.insecure_channel(target)
        self.model_name = model_name
        self.timeout_s = timeout_s
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def predict(self, columns: dict[str, Any], version: int | None = None,
                signature: str = names.SIGNATURE) -> dict[str, np.ndarray]:
        """Columns of raw features in, {output name: numpy array} out."""
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        for name, values in columns.items():
            request.inputs[name].CopyFrom(_tf().make_tensor_proto(np.asarray(values)))
        response = self._predict.Predict(request, timeout=self.timeout_s)
        return {name: _tf().make_ndarray(proto) for name, proto in response.outputs.items()}

    def status(self, version: int | None = None) -> list[tuple[int, str]]:
        """[(version, state name)] as GetModelStatus reports them."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        if version is not None:
            request.model_spec.version.value = version
        response = self._models.GetModelStatus(request, timeout=self.timeout_s)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return [(s.version, state_name(s.state)) for s in response.model_version_status]
