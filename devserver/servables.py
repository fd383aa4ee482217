"""Loaded model versions for the development model server, and the version-swap policy.

A `Servable` is one SavedModel version's `serving_default` signature. `ServableManager` polls the
model repository and applies TF Serving's "latest N" version policy (or, when the repository
records version labels, serves exactly the labelled versions under their labels) with its
availability-preserving order: a new version is loaded and becomes servable *before* the old one
is released, and requests already running keep a reference to the version they started on, so a
push never fails a request. Inputs are validated here so that the REST and gRPC front ends return
the same errors.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from flywheel import model_repository as repo
from flywheel import names, storage

log = logging.getLogger(__name__)


class ServingError(Exception):
    """An error with a gRPC-style code; front ends map it to HTTP status / gRPC status."""
    code = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError):
    pass


class NotFound(ServingError):
    code = "NOT_FOUND"
    http_status = 404


class Unavailable(ServingError):
    code = "UNAVAILABLE"
    http_status = 503


@dataclass
class Servable:
    name: str
    version: int
    path: str
    function: Callable[..., dict]
    inputs: dict[str, Any]            # input name -> tf.DType
    outputs: list[str]
    signature_def: dict                # SignatureDef as JSON (TF Serving's metadata shape)

    def predict(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf
        missing = sorted(set(self.inputs) - set(columns))
        if missing:
            raise InvalidArgument(f"Missing input(s) {missing}; signature {names.SIGNATURE} takes {sorted(self.inputs)}")
        unknown = sorted(set(columns) - set(self.inputs))
        if unknown:
            raise InvalidArgument(f"Unknown input(s) {unknown}; signature {names.SIGNATURE} takes {sorted(self.inputs)}")
        sizes = {len(v) if np.ndim(v) else -1 for v in columns.values()}
        if len(sizes) != 1 or -1 in sizes:
            raise InvalidArgument("Input tensors must be 1-D with the same batch size; got shapes "
                                  + str({k: list(np.shape(v)) for k, v in columns.items()}))
        feed = {}
        for name, values in columns.items():
            try:
                feed[name] = tf.constant(values, dtype=self.inputs[name])
            except (TypeError, ValueError, tf.errors.InvalidArgumentError) as err:
                raise InvalidArgument(f"input '{name}' expects {self.inputs[name].name}: {err}") from None
        try:
            result = self.function(**feed)
        except tf.errors.InvalidArgumentError as err:
            raise InvalidArgument(err.message) from None
        return {k: v.numpy() for k, v in result.items()}


def load_servable(path: str, name: str, version: int) -> Servable:
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    import tensorflow_decision_forests  # noqa: F401  (registers the ops a gradient-boosted-trees model calls)
    loaded = tf.saved_model.load(path)
    if names.SIGNATURE not in loaded.signatures:
        raise ValueError(f"{path}: no '{names.SIGNATURE}' signature (has {list(loaded.signatures)})")
    function = loaded.signatures[names.SIGNATURE]
    _, kwargs = function.structured_input_signature
    proto = saved_model_pb2.SavedModel.FromString(storage.read_bytes(storage.join(path, "saved_model.pb")))
    signature_defs = {k: json_format.MessageToDict(v, preserving_proto_field_name=True)
                      for k, v in proto.meta_graphs[0].signature_def.items() if not k.startswith("__")}
    servable = Servable(name=name, version=version, path=path, function=function,
                        inputs={k: spec.dtype for k, spec in kwargs.items()},
                        outputs=sorted(function.structured_outputs), signature_def=signature_defs)
    servable._keepalive = loaded  # the signature function needs its SavedModel's variables alive
    return servable


@dataclass
class ServableManager:
    repository: str
    model_name: str
    num_versions: int = 1                       # TF Serving's `latest { num_versions }`
    loader: Callable[[str, str, int], Servable] = load_servable
    _serving: dict[int, Servable] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)   # label -> version, as last read
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wanted(self) -> list[int]:
        """The versions to serve: the labelled ones (production, canary, shadow) when the
        repository records labels, as TF Serving's `specific` policy with version_labels; else the
        newest `num_versions` (TF Serving's `latest`)."""
        if storage.exists(repo.labels_path(self.repository, self.model_name)):
            found = repo.labels(self.repository, self.model_name)
            self.labels = found
            present = set(repo.versions(self.repository, self.model_name))
            return sorted(v for v in set(found.values()) if v in present)
        self.labels = {}
        return repo.versions(self.repository, self.model_name)[-self.num_versions:]

    def labelled(self, model_name: str, label: str) -> int:
        """The version a label names (TF Serving's /labels/LABEL); NotFound when none does or it is not loaded."""
        version = self.labels.get(label) if model_name == self.model_name else None
        if version is None or version not in self._serving:
            raise NotFound(f"Servable not found for request: Label({model_name}, {label})"
                           if version is None else f"Servable not found for request: Specific({model_name}, {version})")
        return version

    def poll(self) -> None:
        """Load wanted versions not yet loaded, then release the ones the policy no longer wants."""
        wanted = self.wanted()
        for version in wanted:
            if version in self._serving or version in self.failed:
                continue
            path = repo.version_dir(self.repository, self.model_name, version)
            if not storage.exists(storage.join(path, "saved_model.pb")):
                continue  # partially copied (object stores): not ready yet
            try:
                servable = self.loader(path, self.model_name, version)
            except Exception as err:  # a broken version must not take the server down
                log.error("loading %s version %d failed: %s", self.model_name, version, err)
                self.failed[version] = f"{type(err).__name__}: {err}"
                continue
            with self._lock:  # dict replaced, never mutated: readers need no lock
                self._serving = {**self._serving, version: servable}
            log.info("serving %s version %d", self.model_name, version)
        if wanted and any(v in self._serving for v in wanted):
            with self._lock:
                self._serving = {v: s for v, s in self._serving.items() if v in wanted}

    def run_polling(self, every_s: float, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll()
            except Exception:  # e.g. repository briefly unreadable; keep serving what is loaded
                log.exception("polling %s failed", self.repository)
            stop.wait(every_s)

    def get(self, model_name: str, version: int | None = None) -> Servable:
        serving = self._serving
        if model_name != self.model_name or not serving:
            request = f"Latest({model_name})" if version is None else f"Specific({model_name}, {version})"
            raise NotFound(f"Servable not found for request: {request}")
        if version is None:  # as TF Serving: the highest loaded version, labels or not (clients name a label)
            return serving[max(serving)]
        if version not in serving:
            raise NotFound(f"Servable not found for request: Specific({model_name}, {version})")
        return serving[version]

    def status(self, model_name: str, version: int | None = None) -> list[dict]:
        """TF Serving's model_version_status list (REST JSON shape)."""
        if model_name != self.model_name:
            raise NotFound(f"Could not find any versions of model {model_name}")
        rows = [{"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                for v in sorted(self._serving, reverse=True)]
        rows += [{"version": str(v), "state": "END", "status": {"error_code": "UNKNOWN", "error_message": msg}}
                 for v, msg in sorted(self.failed.items(), reverse=True)]
        if version is not None:
            rows = [r for r in rows if r["version"] == str(version)]
            if not rows:
                raise NotFound(f"Could not find version {version} of model {model_name}")
        if not rows:
            raise NotFound(f"Could not find any versions of model {model_name}")
        return rows

    def wait_until_serving(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self._serving and time.monotonic() < deadline:
            time.sleep(0.05)
        return bool(self._serving)
