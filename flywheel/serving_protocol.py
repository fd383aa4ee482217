"""TF Serving's REST protocol as Flywheel speaks it: the route grammar, the paths built from it,
the ports, and the shape of an error. The sidecar, the development model server, infra
validation, serving's clients and the tools all take them from here, so a client and a server
cannot disagree on a path.

GET  /v1/models/NAME[/versions/N | /labels/LABEL]            model status
GET  /v1/models/NAME[/versions/N | /labels/LABEL]/metadata   signature metadata
POST /v1/models/NAME[/versions/N | /labels/LABEL]:predict    predictions

The regexes are compiled once here; the sidecar matches every request against them.
"""
from __future__ import annotations

import json
import re

REST_PORT = 8501        # TF Serving's REST API (and the development model server's)
GRPC_PORT = 8500        # TF Serving's gRPC API; the sidecar does not proxy gRPC
SIDECAR_PORT = 8080     # the monitoring sidecar: predictions, feedback, metrics

MODELS_PREFIX = "/v1/models/"
FEEDBACK_PATH = "/v1/feedback"      # the sidecar's own route, beside TF Serving's
PREDICT_VERB = ":predict"
METADATA_SUFFIX = "/metadata"

_NAME = r"(?P<name>[^/:]+)"
_LABEL = r"/labels/(?P<label>[^/:]+)"
# Every route a model server answers: status, metadata or a verb. The version may be negative
# so that the server, as TF Serving does, answers "not found" rather than "malformed".
MODEL_ROUTE = re.compile(rf"^{MODELS_PREFIX}{_NAME}(?:/versions/(?P<version>-?\d+)|{_LABEL})?"
                         rf"(?:(?P<metadata>{METADATA_SUFFIX})|:(?P<verb>[a-z]+))?$")
# A predict request the sidecar observes. Only a non-negative version is one it can route and
# log; any other path goes upstream untouched, for TF Serving to answer.
PREDICT_ROUTE = re.compile(rf"^{MODELS_PREFIX}{_NAME}(?:/versions/(?P<version>\d+)|{_LABEL})?"
                           rf"{PREDICT_VERB}$")
# The request target a predict request may have to take the sidecar's short way: visible ASCII
# with no space and no '%' escape (anything else is left to the full HTTP parser).
PLAIN_TARGET = re.compile(rf"{MODELS_PREFIX}[!-$&-~]*")


def model_path(name: str, version: int | None = None, label: str | None = None, suffix: str = "") -> str:
    """/v1/models/NAME, or one of its versions or labels, then `suffix`; one string built, as
    the sidecar builds one per routed request."""
    if version is not None:
        return f"{MODELS_PREFIX}{name}/versions/{version}{suffix}"
    if label is not None:
        return f"{MODELS_PREFIX}{name}/labels/{label}{suffix}"
    return f"{MODELS_PREFIX}{name}{suffix}"


def predict_path(name: str, version: int | None = None, label: str | None = None) -> str:
    """/v1/models/NAME[/versions/N | /labels/LABEL]:predict"""
    return model_path(name, version, label, PREDICT_VERB)


def version_predict_path(name: str, version: int) -> str:
    """/v1/models/NAME/versions/N:predict in one step: the sidecar builds it for every request it
    routes to a version, so it skips predict_path's choices."""
    return f"{MODELS_PREFIX}{name}/versions/{version}{PREDICT_VERB}"


def metadata_path(name: str, version: int | None = None, label: str | None = None) -> str:
    """/v1/models/NAME[/versions/N | /labels/LABEL]/metadata"""
    return model_path(name, version, label, METADATA_SUFFIX)


def local_url(port: int, path: str = "", host: str = "127.0.0.1") -> str:
    """http://HOST:PORT/PATH on this machine (a server started here, a port-forward)."""
    return f"http://{host}:{port}{path}"


def error_body(message: str) -> dict:
    """TF Serving's error answer: {"error": message}."""
    return {"error": message}


def error_bytes(message: str) -> bytes:
    """error_body as the bytes a response carries."""
    return json.dumps({"error": message}).encode()


def error_message(body: bytes | str) -> str:
    """The message of an error answer; the body itself when it is not TF Serving's JSON."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        document = json.loads(text)
    except ValueError:
        return text
    return document.get("error", text) if isinstance(document, dict) else text
