"""Infra validation: the candidate in a model server of its own before it may be pushed.

After TFX's InfraValidator: the model is copied into a sandbox repository and loaded by a model
server process (the development model server, or TF Serving's `tensorflow_model_server` when
params name one) on a loopback port; then

1. it must load: a SavedModel the server cannot load, or without a usable `serving_default`
   signature, fails here instead of in production;
2. it must answer the test split exactly as evaluate scored it: every row evaluate scored is
   sent through the server's REST API and each answer must equal eval_predictions.json within
   `tolerance` (a signature whose inputs or outputs changed, or preprocessing that differs
   between the exported graph and evaluation, shows here);
3. it must be fast enough: one-row requests sent open loop at `rate_rps` (each request's time
   counts from when it was due, so a slow server cannot slow the sender down and hide its
   queue), p99 at most `max_p99_ms` (measured again once when it misses; the better one counts).

Any failure means not blessed: push reads infra_blessing.json and does not publish, naming the
reason. The figures go into the model card and the run's summary.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np
from kfp import dsl

from components.artifact_io import atomic_dir
from components.kfp_component import flywheel_component
from flywheel import bundle, loopback, model_card, model_inputs, names
from flywheel.params import InfraValidateParams

SANDBOX_VERSION = 1


def server_command(params: InfraValidateParams, repository: str, model_name: str, rest_port: int) -> list[str]:
    """The model server's command line: TF Serving when a binary is named, else the dev server."""
    if params.server_binary:
        return [params.server_binary, "--port=0", f"--rest_api_port={rest_port}", f"--model_name={model_name}",
                f"--model_base_path={os.path.abspath(os.path.join(repository, model_name))}",
                "--rest_api_num_threads=4"]
    return [sys.executable, "-m", "devserver", "--host", "127.0.0.1", "--rest-port", str(rest_port),
            "--grpc-port", "0", "--model-repository", repository, "--model-name", model_name,
            "--poll-seconds", "3600"]


def _get_json(url: str, timeout_s: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read())
        except ValueError:
            return error.code, {}


def wait_loaded(process: subprocess.Popen, url: str, timeout_s: float) -> str:
    """"" once the sandbox version is AVAILABLE; else why it is not (exited, failed to load, timed out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"the model server exited with code {process.returncode} before the model was available"
        try:
            status, document = _get_json(url, timeout_s=2.0)
        except (OSError, ValueError):
            time.sleep(0.2)
            continue
        for row in document.get("model_version_status", []) if status == 200 else []:
            if row.get("version") == str(SANDBOX_VERSION):
                if row.get("state") == "AVAILABLE":
                    return ""
                if row.get("state") == "END":
                    return f"the model server could not load the model: {row.get('status', {}).get('error_message')}"
        time.sleep(0.2)
    return f"the model was not available within {timeout_s:.0f}s"


def _post(url: str, body: bytes, timeout_s: float = 30.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _scores(outputs) -> np.ndarray:
    """The `score` output of a columnar answer (a dict of outputs, or the one output itself)."""
    value = outputs[names.OUTPUT_SCORE] if isinstance(outputs, dict) else outputs
    return np.asarray(value, dtype=np.float64).reshape(-1)


def _jsonable(column: np.ndarray) -> list:
    """A column as JSON values; a missing float stays NaN, which TF Serving's REST API parses."""
    return [str(v) for v in column] if column.dtype == object else column.tolist()


def compare(predict_url: str, inputs: dict[str, np.ndarray], expected: np.ndarray, batch_rows: int) -> dict:
    """Send every row in batches; the largest |served - expected| and the first error, if any."""
    rows = len(expected)
    served = np.empty(rows, dtype=np.float64)
    for start in range(0, rows, batch_rows):
        batch = {k: _jsonable(v[start:start + batch_rows]) for k, v in inputs.items()}
        status, payload = _post(predict_url, json.dumps({"inputs": batch}).encode())
        if status != 200:
            return {"error": f"rows {start}-{min(rows, start + batch_rows) - 1}: HTTP {status}: "
                             f"{payload[:300].decode(errors='replace')}", "rows_compared": start}
        try:
            answer = _scores(json.loads(payload)["outputs"])
        except (ValueError, KeyError, TypeError) as error:
            return {"error": f"rows {start}-: the answer has no '{names.OUTPUT_SCORE}' output ({error})",
                    "rows_compared": start}
        if answer.size != min(batch_rows, rows - start):
            return {"error": f"rows {start}-: {answer.size} scores for {min(batch_rows, rows - start)} rows",
                    "rows_compared": start}
        served[start:start + answer.size] = answer
    difference = np.abs(served - expected)
    worst = int(np.nanargmax(difference)) if rows else 0
    return {"rows_compared": rows, "max_abs_difference": float(np.nanmax(difference)) if rows else 0.0,
            "worst_row": worst, "served_at_worst": float(served[worst]) if rows else None,
            "expected_at_worst": float(expected[worst]) if rows else None,
            "nan_mismatch": int(np.sum(np.isnan(served) != np.isnan(expected)))}


async def _timed_requests(predict_url: str, bodies: list[bytes], rate_rps: float) -> tuple[list[float], int]:
    """Open loop: request i is due at start + i / rate; its latency counts from then."""
    import aiohttp

    latencies, errors = [], 0
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05

        async def one(i: int) -> None:
            nonlocal errors
            due = start + i / rate_rps
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                async with session.post(predict_url, data=bodies[i % len(bodies)],
                                        headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                errors += 1
            latencies.append(loop.time() - due)
        await asyncio.gather(*(one(i) for i in range(len(bodies))))
    return latencies, errors


def latency(predict_url: str, inputs: dict[str, np.ndarray], params: InfraValidateParams) -> dict:
    rows = len(next(iter(inputs.values())))
    bodies = [json.dumps({"inputs": {k: _jsonable(v[i:i + 1]) for k, v in inputs.items()}}).encode()
              for i in (np.arange(params.latency_requests) % max(rows, 1))]
    # A few requests first, untimed: the first calls of a freshly loaded graph are slow everywhere.
    for body in bodies[:5]:
        _post(predict_url, body)
    latencies, errors = asyncio.run(_timed_requests(predict_url, bodies, params.rate_rps))
    ms = np.asarray(latencies) * 1000.0
    return {"requests": len(bodies), "rate_rps": params.rate_rps, "errors": errors,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max())}


def measured_latency(predict_url: str, inputs: dict[str, np.ndarray], params: InfraValidateParams) -> dict:
    """latency(), measured a second time when the first misses the objective, the better kept: one
    burst from a noisy neighbour on the node should not refuse a model; a slow model misses twice."""
    first = latency(predict_url, inputs, params)
    if first["errors"] or first["p99_ms"] <= params.max_p99_ms:
        return {**first, "attempts_p99_ms": [first["p99_ms"]]}
    second = latency(predict_url, inputs, params)
    return {**min(first, second, key=lambda t: t["p99_ms"]), "attempts_p99_ms": [first["p99_ms"], second["p99_ms"]]}


def decide(loaded: str, comparison: dict | None, timing: dict | None, params: InfraValidateParams) -> tuple[bool, str]:
    if loaded:
        return False, loaded
    if comparison.get("error"):
        return False, f"the served model failed to answer the test split: {comparison['error']}"
    if comparison["nan_mismatch"] or not comparison["max_abs_difference"] <= params.tolerance:
        return False, (f"the served answers differ from evaluation's by up to {comparison['max_abs_difference']:.3g} "
                       f"(row {comparison['worst_row']}: {comparison['served_at_worst']} served, "
                       f"{comparison['expected_at_worst']} evaluated; tolerance {params.tolerance})")
    if timing["errors"]:
        return False, f"{timing['errors']} of {timing['requests']} latency requests failed"
    if timing["p99_ms"] > params.max_p99_ms:
        return False, (f"p99 latency {timing['p99_ms']:.1f} ms at {timing['rate_rps']:.0f} requests/s is above the "
                       f"objective {params.max_p99_ms} ms")
    return True, (f"loaded; {comparison['rows_compared']} test rows answered as evaluated (max difference "
                  f"{comparison['max_abs_difference']:.1e}); p50 {timing['p50_ms']:.1f} ms, p99 {timing['p99_ms']:.1f} ms "
                  f"at {timing['rate_rps']:.0f} requests/s")


def run(examples_dir: str, model_dir: str, evaluation_dir: str, output_dir: str,
        params: InfraValidateParams = InfraValidateParams(), model_name: str = names.DEFAULT_MODEL_NAME) -> dict:
    """Validate; write infra_blessing.json, infra_validation.json (the figures), the model card
    with an infra validation section, and the server's log to output_dir. Returns the figures."""
    from components.evaluate import scored_rows

    started = time.perf_counter()
    metadata = bundle.read_metadata(model_dir)
    rows = scored_rows(examples_dir, names.TEST, metadata)
    inputs = model_inputs.to_inputs(rows, model_inputs.model_features(metadata), metadata.get("fill_values", {}))
    with open(os.path.join(evaluation_dir, names.EVAL_PREDICTIONS)) as f:
        expected = np.asarray(json.load(f)["values"], dtype=np.float64)
    if len(expected) != len(rows):
        raise ValueError(f"{evaluation_dir}: {len(expected)} evaluated scores for {len(rows)} test rows "
                         "(the evaluation is not of these examples)")
    server = "TF Serving (" + params.server_binary + ")" if params.server_binary else "development model server"
    with tempfile.TemporaryDirectory(prefix="infra-validate-") as sandbox, atomic_dir(output_dir) as staging:
        # A copy: the server must never see the pipeline's artifact, only its own repository.
        shutil.copytree(model_dir, os.path.join(sandbox, model_name, str(SANDBOX_VERSION)))
        port = loopback.free_port()
        log_path = staging / "model_server.log"
        load_started = time.perf_counter()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(server_command(params, sandbox, model_name, port), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}/v1/models/{model_name}"
        comparison = timing = None
        try:
            loaded = wait_loaded(process, base, params.load_timeout_s)
            load_seconds = time.perf_counter() - load_started
            if not loaded:
                predict_url = f"{base}/versions/{SANDBOX_VERSION}:predict"
                comparison = compare(predict_url, inputs, expected, params.batch_rows)
                if not comparison.get("error"):
                    timing = measured_latency(predict_url, inputs, params)
        finally:
            loopback.stop(process)
        passed, reason = decide(loaded, comparison, timing, params)
        figures = {"passed": passed, "reason": reason, "server": server, "load_seconds": load_seconds,
                   "rows_compared": (comparison or {}).get("rows_compared", 0),
                   "max_abs_difference": (comparison or {}).get("max_abs_difference", float("nan")),
                   "latency": timing, "params": {"tolerance": params.tolerance, "max_p99_ms": params.max_p99_ms},
                   "seconds": time.perf_counter() - started}
        (staging / names.INFRA_BLESSING_FILE).write_text(json.dumps({"blessed": passed, "reason": reason}) + "\n")
        (staging / names.INFRA_VALIDATION).write_text(json.dumps(figures, indent=2) + "\n")
        card = os.path.join(evaluation_dir, names.MODEL_CARD)
        text = open(card).read() if os.path.exists(card) else ""
        (staging / names.MODEL_CARD).write_text(text.rstrip("\n") + "\n\n" + model_card.infra_validation_section(figures))
    return figures


@flywheel_component
def infra_validate_component(examples: dsl.Input[dsl.Dataset], model: dsl.Input[dsl.Model],
                             evaluation: dsl.Input[dsl.Artifact], params: dict, push: dict,
                             validation: dsl.Output[dsl.Artifact], model_card: dsl.Output[dsl.Markdown]):
    """Load the candidate in a sandboxed model server, check its answers and its latency
    (params.yaml's `infra_validate` section; `push` names the model)."""
    import os
    import shutil

    from components.infra_validate import run
    from flywheel import names
    from flywheel import params as flywheel_params

    settings = flywheel_params.build(flywheel_params.InfraValidateParams, params, "infra_validate")
    figures = run(examples.path, model.path, evaluation.path, validation.path, settings,
                  flywheel_params.build(flywheel_params.PushParams, push, "push").model_name)
    print(f"[infra_validate] {'passed' if figures['passed'] else 'FAILED'}: {figures['reason']}", flush=True)
    shutil.copyfile(os.path.join(validation.path, names.MODEL_CARD), model_card.path)
    latency = figures["latency"] or {}
    validation.metadata.update({"blessed": figures["passed"], "reason": figures["reason"],
                                "load_seconds": figures["load_seconds"], "seconds": figures["seconds"],
                                "p50_ms": latency.get("p50_ms"), "p99_ms": latency.get("p99_ms"),
                                "rate_rps": latency.get("rate_rps"),
                                "max_abs_difference": figures["max_abs_difference"]})
