"""TF Serving's REST API for the development model server (aiohttp app built by `make_rest_app`).

GET  /v1/models/NAME[/versions/N]            model status (also /labels/LABEL wherever /versions/N is)
GET  /v1/models/NAME[/versions/N]/metadata   signature metadata
POST /v1/models/NAME[/versions/N]:predict    {"instances": [...]} (row) or {"inputs": {...}} (columnar)

Responses follow TF Serving: row requests answer {"predictions": [...]} (bare values when the
signature has one output, else one object per row), columnar requests answer {"outputs": ...};
errors are {"error": "..."} with 400 (invalid argument) or 404 (not found).
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from aiohttp import web

from devserver.servables import InvalidArgument, ServableManager, ServingError
from flywheel import names, serving_protocol

ROUTE = serving_protocol.MODEL_ROUTE


def error(status: int, message: str) -> web.Response:
    return web.json_response(serving_protocol.error_body(message), status=status)


def _scalar(name: str, value, dtype) -> object:
    """One JSON value checked against the input's dtype, as TF Serving's JSON parser does."""
    kind = dtype.name
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)) and not (
            kind == "string" and isinstance(value, dict)):
        raise InvalidArgument(f"input '{name}': expected one {kind} per row, got {json.dumps(value)[:80]}")
    if kind == "string":
        if isinstance(value, str):
            try:
                return value.encode()
            except UnicodeEncodeError:   # a lone surrogate (\ud800): not UTF-8, as TF Serving's parser says
                raise InvalidArgument(f"input '{name}': string is not valid UTF-8 (lone surrogate)") from None
        if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError:
                raise InvalidArgument(f"input '{name}': invalid base64 in {{\"b64\": ...}}") from None
        raise InvalidArgument(f"input '{name}': expected a string, got {json.dumps(value)[:80]}")
    if kind.startswith("int") or kind.startswith("uint"):
        if isinstance(value, int):
            limits = np.iinfo(dtype.as_numpy_dtype)
            if not limits.min <= value <= limits.max:
                raise InvalidArgument(f"input '{name}': {str(value)[:40]} is out of range for {kind}")
            return value
        raise InvalidArgument(f"input '{name}': JSON value {json.dumps(value)[:80]} is not {kind}")
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:   # 10**400: no float holds it
            raise InvalidArgument(f"input '{name}': {str(value)[:40]}... is out of range for {kind}") from None
    if isinstance(value, float):
        return value
    raise InvalidArgument(f"input '{name}': JSON value {json.dumps(value)[:80]} is not {kind}")


def _column(name: str, values: list, dtype) -> np.ndarray:
    if not isinstance(values, list):
        raise InvalidArgument(f"input '{name}': expected a list (one value per row), got {json.dumps(values)[:80]}")
    converted = [_scalar(name, v, dtype) for v in values]
    if dtype.name == "string":
        return np.array(converted, dtype=object)
    return np.array(converted, dtype=dtype.as_numpy_dtype)


def parse_predict_body(body: bytes, inputs: dict) -> tuple[dict[str, np.ndarray], bool]:
    """-> (typed columns, row_format)."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:   # RecursionError: nested too deep
        raise InvalidArgument(f"JSON Parse error: {err}") from None
    if not isinstance(request, dict):
        raise InvalidArgument("JSON Parse error: request body must be a JSON object")
    signature = request.get("signature_name", names.SIGNATURE) or names.SIGNATURE
    if signature != names.SIGNATURE:
        raise InvalidArgument(f'Serving signature name: "{signature}" not found in signature def')
    has_rows, has_columns = "instances" in request, "inputs" in request
    if has_rows == has_columns:
        raise InvalidArgument("Missing 'inputs' or 'instances' key" if not has_rows
                              else "Not both 'instances' and 'inputs' can be set in a request")
    if has_columns:
        columns = request["inputs"]
        if not isinstance(columns, dict):
            if len(inputs) != 1:
                raise InvalidArgument("'inputs' must be an object of named inputs for a multi-input signature")
            columns = {next(iter(inputs)): columns}
        unknown = sorted(set(columns) - set(inputs))
        if unknown:
            raise InvalidArgument(f"Unknown input(s) {unknown}; signature takes {sorted(inputs)}")
        return {n: _column(n, v, inputs[n]) for n, v in columns.items()}, False
    rows = request["instances"]
    if not isinstance(rows, list) or not rows:
        raise InvalidArgument("'instances' must be a non-empty list")
    columns: dict[str, list] = {n: [] for n in inputs}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            if len(inputs) != 1:
                raise InvalidArgument(f"instances[{i}]: expected an object of named inputs, got {json.dumps(row)[:80]}")
            row = {next(iter(inputs)): row}
        if set(row) != set(inputs):
            missing, unknown = sorted(set(inputs) - set(row)), sorted(set(row) - set(inputs))
            raise InvalidArgument(f"instances[{i}]: missing input(s) {missing}, unknown input(s) {unknown}")
        for name, value in row.items():
            columns[name].append(value)
    return {n: _column(n, v, inputs[n]) for n, v in columns.items()}, True


def _jsonable(array: np.ndarray) -> list:
    if array.dtype == object:
        return [v.decode(errors="replace") if isinstance(v, bytes) else v for v in array.tolist()]
    if array.dtype.kind == "f" and not np.isfinite(array).all():   # JSON has no NaN or Infinity: null
        return np.where(np.isfinite(array), array, None).tolist()
    return array.tolist()


def _non_finite(outputs: dict[str, np.ndarray]) -> int:
    return sum(int(np.size(v) - np.isfinite(v).sum()) for v in outputs.values() if v.dtype.kind == "f")


def format_outputs(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    lists = {k: _jsonable(v) for k, v in outputs.items()}
    single = next(iter(lists.values())) if len(lists) == 1 else None
    if not row_format:
        return {"outputs": single if single is not None else lists}
    if single is not None:
        return {"predictions": single}
    batch = len(next(iter(lists.values())))
    return {"predictions": [{k: v[i] for k, v in lists.items()} for i in range(batch)]}


METRICS_PATH = "/monitoring/prometheus/metrics"
NON_FINITE = "X-Non-Finite-Predictions"   # how many predictions were NaN or infinite, answered as null


class RequestCounts:
    """A small subset of TF Serving's own metrics, with its names, for /monitoring/prometheus/metrics."""

    def __init__(self):
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, model: str, status: str) -> None:
        self.counts[(model, status)] = self.counts.get((model, status), 0) + 1

    def render(self, manager: ServableManager) -> str:
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        lines += [f':tensorflow:serving:request_count{{model_name="{m}",status="{s}"}} {n}'
                  for (m, s), n in sorted(self.counts.items())]
        lines.append("# TYPE :tensorflow:core:servable_state gauge")
        lines += [f':tensorflow:core:servable_state{{model_name="{manager.model_name}",version="{v}"}} 1'
                  for v in sorted(manager._serving)]
        return "\n".join(lines) + "\n"


def make_rest_app(manager: ServableManager, executor: ThreadPoolExecutor | None = None,
                  max_body_bytes: int = 64 * 1024 * 1024) -> web.Application:
    executor = executor or ThreadPoolExecutor(max_workers=4, thread_name_prefix="predict")
    counts = RequestCounts()

    async def handle(request: web.Request) -> web.Response:
        if request.path == METRICS_PATH:
            return web.Response(text=counts.render(manager), content_type="text/plain")
        match = ROUTE.match(request.path)
        if not match:
            return error(404, f"Malformed request: {request.method} {request.path}")
        name, verb = match["name"], match["verb"]
        version = int(match["version"]) if match["version"] else None
        try:
            if match["label"]:
                version = manager.labelled(name, match["label"])
            if request.method == "GET" and not verb:
                if match["metadata"]:
                    servable = manager.get(name, version)
                    return web.json_response({
                        "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                        "metadata": {"signature_def": {"signature_def": servable.signature_def}}})
                return web.json_response({"model_version_status": manager.status(name, version)})
            if request.method == "POST" and verb == "predict":
                servable = manager.get(name, version)  # held for the whole request: swaps cannot pull it away
                body = await request.read()
                columns, row_format = parse_predict_body(body, servable.inputs)
                outputs = await asyncio.get_running_loop().run_in_executor(executor, servable.predict, columns)
                counts.add(name, "OK")
                non_finite = _non_finite(outputs)   # answered as null, and said so
                return web.json_response(format_outputs(outputs, row_format),
                                         headers={NON_FINITE: str(non_finite)} if non_finite else None)
            if request.method == "POST" and verb in ("classify", "regress"):
                return error(400, f"'{verb}' needs a {verb} signature; this model exports '{names.SIGNATURE}' (predict) only")
            return error(404, f"Malformed request: {request.method} {request.path}")
        except ServingError as err:
            if verb == "predict":
                counts.add(name if name == manager.model_name else "__other__", err.code)
            return error(err.http_status, err.message)
        except web.HTTPRequestEntityTooLarge as err:
            return error(413, err.text or "request body too large")
        except Exception as err:   # a JSON 500, never aiohttp's text/plain one
            logging.getLogger(__name__).exception("%s %s failed", request.method, request.path)
            return error(500, f"Internal: {type(err).__name__}")

    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
