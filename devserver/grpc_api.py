"""TF Serving's gRPC PredictionService.Predict and ModelService.GetModelStatus for the dev server."""
from __future__ import annotations

from concurrent import futures

import grpc
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from devserver.servables import ServableManager, ServingError
from flywheel import names

_CODES = {"INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT, "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
          "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE}


def _version(manager: ServableManager, model_spec) -> int | None:
    if model_spec.HasField("version_label"):
        return manager.labelled(model_spec.name, model_spec.version_label)
    return model_spec.version.value if model_spec.HasField("version") else None


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ServableManager):
        self.manager = manager

    def Predict(self, request, context):
        import tensorflow as tf
        try:
            servable = self.manager.get(request.model_spec.name, _version(self.manager, request.model_spec))
            signature = request.model_spec.signature_name or names.SIGNATURE
            if signature != names.SIGNATURE:
                raise ServingError(f'Serving signature name: "{signature}" not found in signature def')
            columns = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
            outputs = servable.predict(columns)
        except ServingError as err:
            context.abort(_CODES.get(err.code, grpc.StatusCode.UNKNOWN), err.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = names.SIGNATURE
        wanted = set(request.output_filter) or set(outputs)
        for name, array in outputs.items():
            if name in wanted:
                response.outputs[name].CopyFrom(tf.make_tensor_proto(array))
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ServableManager):
        self.manager = manager

    def GetModelStatus(self, request, context):
        try:
            rows = self.manager.status(request.model_spec.name, _version(self.manager, request.model_spec))
        except ServingError as err:
            context.abort(_CODES.get(err.code, grpc.StatusCode.UNKNOWN), err.message)
        response = get_model_status_pb2.GetModelStatusResponse()
        State = get_model_status_pb2.ModelVersionStatus.State
        for row in rows:
            status = response.model_version_status.add()
            status.version = int(row["version"])
            status.state = State.Value(row["state"])
            status.status.error_message = row["status"]["error_message"]
            if row["status"]["error_code"] != "OK":
                status.status.error_code = 2  # tensorflow.error.Code UNKNOWN
        return response


def make_grpc_server(manager: ServableManager, port: int, host: str = "0.0.0.0", workers: int = 8) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"gRPC: cannot bind {host}:{port}")
    return server
