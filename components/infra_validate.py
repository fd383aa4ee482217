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
3. it must not be materially slower than the model it would replace: one-row requests are sent
   open loop at `rate_rps` (each request's time counts from when it was due, so a slow server
   cannot slow the sender down and hide its queue) to the candidate and to the production
   version, each in a server of its own, interleaved in pairs so the two requests of a pair
   meet the same load; the candidate is refused when, by the median over the pairs, it takes
   more than `max_latency_ratio` times production's time and more than
   `min_latency_excess_ms` longer. The absolute objective (p99 at most `max_p99_ms`) is judged
   only on a quiet machine: the CPU time other work takes during the measurement is read from
   /proc (the servers' and this process's own time excluded), and above `quiet_busy_share` of
   the cores the objective is reported, not judged. The summary says which judged. A p99
   measured on a shared build machine under load says little about the model (it is the
   machine's); the pairs measured beside production do.

Any failure means not blessed: push reads infra_blessing.json and does not publish, naming the
reason. The figures go into the model card and the run's summary.
"""

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from kfp import dsl

from components import machine_load, model_inputs
from components.artifact_io import atomic_dir
from components.kfp_component import flywheel_component
from flywheel import bundle, http_client, loopback, model_repository, names, serving_protocol, storage
from flywheel.params import InfraValidateParams
from flywheel.report import model_card

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
    """(status, document); an error answer that is not JSON reads as {}."""
    answer = http_client.request(url, timeout_s=timeout_s)
    try:
        return answer.status, answer.json()
    except ValueError:
        if answer.ok:
            raise
        return answer.status, {}


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
    answer = http_client.request(url, body, headers={"Content-Type": http_client.JSON}, timeout_s=timeout_s)
    return answer.status, answer.body


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
    # A row both sides answer with NaN (or null) agrees; nan_mismatch counts the rows where only one does.
    compared = ~np.isnan(difference)
    worst = int(np.argmax(np.where(compared, difference, -1.0))) if compared.any() else 0
    return {"rows_compared": rows, "max_abs_difference": float(difference[compared].max()) if compared.any() else 0.0,
            "worst_row": worst, "served_at_worst": float(served[worst]) if rows else None,
            "expected_at_worst": float(expected[worst]) if rows else None,
            "nan_mismatch": int(np.sum(np.isnan(served) != np.isnan(expected)))}


async def _timed_requests(requests: list[tuple[str, bytes]], rate_rps: float) -> tuple[np.ndarray, np.ndarray]:
    """Open loop: request i is due at start + i / rate; its latency counts from then. Returns
    each request's latency (s) and whether it failed."""
    import aiohttp

    latencies, failed = np.zeros(len(requests)), np.zeros(len(requests), dtype=bool)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05

        async def one(i: int) -> None:
            due = start + i / rate_rps
            await asyncio.sleep(max(0.0, due - loop.time()))
            url, body = requests[i]
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    failed[i] = response.status != 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                failed[i] = True
            latencies[i] = loop.time() - due
        await asyncio.gather(*(one(i) for i in range(len(requests))))
    return latencies, failed


def _bodies(inputs: dict[str, np.ndarray], count: int) -> list[bytes]:
    rows = len(next(iter(inputs.values())))
    return [json.dumps({"inputs": {k: _jsonable(v[i:i + 1]) for k, v in inputs.items()}}).encode()
            for i in (np.arange(count) % max(rows, 1))]


def _figures(latencies: np.ndarray, failed: np.ndarray, rate_rps: float) -> dict:
    ms = latencies * 1000.0
    return {"requests": len(ms), "rate_rps": rate_rps, "errors": int(failed.sum()),
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


def latency(predict_urls: dict[str, str], inputs: dict[str, np.ndarray], params: InfraValidateParams) -> dict:
    """{name: figures} of each server, and with two servers "paired": the median over request
    pairs of the candidate's latency over production's (and minus it, in ms). The requests
    interleave (candidate, production, production, candidate, ...: each pair in turn order),
    each server at `rate_rps`, so the two requests of a pair meet the same load on the machine:
    a pair's ratio is the model's, not the moment's, and the median ignores the pairs a burst
    of other work hit."""
    names_ = list(predict_urls)
    bodies = _bodies(inputs, params.latency_requests)
    # A few requests first, untimed: the first calls of a freshly loaded graph are slow everywhere.
    for url in predict_urls.values():
        for body in bodies[:5]:
            _post(url, body)
    turns = [names_ if i % 2 == 0 else names_[::-1] for i in range(len(bodies))]
    requests = [(predict_urls[name], body) for body, turn in zip(bodies, turns) for name in turn]
    latencies, failed = asyncio.run(_timed_requests(requests, params.rate_rps * len(names_)))
    position = {name: np.array([i * len(names_) + turn.index(name) for i, turn in enumerate(turns)]) for name in names_}
    found = {name: _figures(latencies[position[name]], failed[position[name]], params.rate_rps) for name in names_}
    if len(names_) == 2:
        candidate, production = (latencies[position[name]] * 1000.0 for name in names_)
        found["paired"] = {"pairs": len(candidate),
                           "median_ratio": float(np.median(candidate / np.maximum(production, 1e-6))),
                           "median_excess_ms": float(np.median(candidate - production))}
    return found


def judge_latency(candidate: dict, production: dict | None, paired: dict | None, load: machine_load.Load,
                  params: InfraValidateParams) -> tuple[bool, str]:
    """(passed, what judged and how): materially slower than production, pair by pair, refuses;
    the absolute objective refuses only on a quiet machine."""
    p99 = candidate["p99_ms"]
    notes, passed = [], True
    if production is not None and paired is not None:
        ratio, excess = paired["median_ratio"], paired["median_excess_ms"]
        slower = ratio > params.max_latency_ratio and excess > params.min_latency_excess_ms
        passed = not slower
        notes.append(f"p99 {p99:.1f} ms, production's {production['p99_ms']:.1f} ms interleaved in the same run; "
                     f"per request pair x{ratio:.2f}, {excess:+.1f} ms (medians of {paired['pairs']}; refused above "
                     f"x{params.max_latency_ratio} and +{params.min_latency_excess_ms:g} ms)"
                     f"{': materially slower than production' if slower else ''}")
    else:
        notes.append(f"p99 {p99:.1f} ms (no production version to compare with)")
    if load.quiet(params.quiet_busy_share):
        over = p99 > params.max_p99_ms
        passed = passed and not over
        notes.append(f"objective {params.max_p99_ms:g} ms {'MISSED' if over else 'met'} on a quiet machine "
                     f"({load.describe()})")
    else:
        notes.append(f"objective {params.max_p99_ms:g} ms not judged: machine busy ({load.describe()}; quiet is at "
                     f"most {params.quiet_busy_share:.0%} of the cores)")
    return passed, "; ".join(notes)


def decide(loaded: str, comparison: dict | None, timing: dict | None, params: InfraValidateParams) -> tuple[bool, str]:
    """`timing`: {"candidate": figures, "production": figures | None, "load": machine_load.Load}."""
    if loaded:
        return False, loaded
    if comparison.get("error"):
        return False, f"the served model failed to answer the test split: {comparison['error']}"
    if comparison["nan_mismatch"] or not comparison["max_abs_difference"] <= params.tolerance:
        return False, (f"the served answers differ from evaluation's by up to {comparison['max_abs_difference']:.3g} "
                       f"(row {comparison['worst_row']}: {comparison['served_at_worst']} served, "
                       f"{comparison['expected_at_worst']} evaluated; tolerance {params.tolerance})")
    candidate = timing["candidate"]
    if candidate["errors"]:
        return False, f"{candidate['errors']} of {candidate['requests']} latency requests failed"
    fast_enough, how = judge_latency(candidate, timing.get("production"), timing.get("paired"), timing["load"], params)
    answered = (f"loaded; {comparison['rows_compared']} test rows answered as evaluated (max difference "
                f"{comparison['max_abs_difference']:.1e}); p50 {candidate['p50_ms']:.1f} ms at "
                f"{candidate['rate_rps']:.0f} requests/s; ")
    return fast_enough, answered + how if fast_enough else f"latency: {how}"


def _start(model_dir: str, sandbox: str, model_name: str, params: InfraValidateParams, log_path) -> tuple:
    """A model server on a copy of the model (the server never sees the pipeline's artifact):
    (process, the server's root URL)."""
    storage.copy_tree(model_dir, os.path.join(sandbox, model_name, str(SANDBOX_VERSION)))
    port = loopback.free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(server_command(params, sandbox, model_name, port), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return process, serving_protocol.local_url(port)


def production_version_dir(evaluation_dir: str, repository: str, model_name: str) -> str | None:
    """The production version evaluate compared with (its evaluation file names it), or None."""
    path = os.path.join(evaluation_dir, names.EVALUATION_FILE)
    version = json.load(open(path)).get("production_version") if os.path.exists(path) else None
    if version is None or not repository:
        return None
    found = model_repository.version_dir(repository, model_name, int(version))
    return found if storage.exists(found) else None


def run(examples_dir: str, model_dir: str, evaluation_dir: str, output_dir: str,
        params: InfraValidateParams = InfraValidateParams(), model_name: str = names.DEFAULT_MODEL_NAME,
        production_dir: str | None = None) -> dict:
    """Validate; write infra_blessing.json, infra_validation.json (the figures), the model card
    with an infra validation section, and the servers' logs to output_dir. Returns the figures.
    `production_dir`: the production version, timed beside the candidate when given."""
    from components.evaluate import scored_rows

    check(params)
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
        processes = []
        comparison = timing = None
        production_note = ""
        load_started = time.perf_counter()
        try:
            process, base = _start(model_dir, os.path.join(sandbox, "candidate"), model_name, params,
                                   staging / "model_server.log")
            processes.append(process)
            loaded = wait_loaded(process, base + serving_protocol.model_path(model_name), params.load_timeout_s)
            load_seconds = time.perf_counter() - load_started
            if not loaded:
                predict_url = base + serving_protocol.predict_path(model_name, SANDBOX_VERSION)
                comparison = compare(predict_url, inputs, expected, params.batch_rows)
            if not loaded and not comparison.get("error"):
                urls = {"candidate": predict_url}
                if production_dir:
                    production, production_base = _start(production_dir, os.path.join(sandbox, "production"),
                                                         model_name, params, staging / "production_server.log")
                    processes.append(production)
                    production_note = wait_loaded(production, production_base + serving_protocol.model_path(model_name),
                                                  params.load_timeout_s)
                    if not production_note:
                        urls["production"] = production_base + serving_protocol.predict_path(model_name, SANDBOX_VERSION)
                with machine_load.Sampler([p.pid for p in processes]) as sampler:
                    measured = latency(urls, inputs, params)
                timing = {"candidate": measured["candidate"], "production": measured.get("production"),
                          "paired": measured.get("paired"), "load": sampler.load}
        finally:
            for process in processes:
                loopback.stop(process)
        passed, reason = decide(loaded, comparison, timing, params)
        if production_note:
            reason += f" (production not timed: {production_note})"
        figures = {"passed": passed, "reason": reason, "server": server, "load_seconds": load_seconds,
                   "rows_compared": (comparison or {}).get("rows_compared", 0),
                   "max_abs_difference": (comparison or {}).get("max_abs_difference"),
                   "latency": timing and timing["candidate"],
                   "production_latency": timing and timing["production"],
                   "paired_latency": timing and timing["paired"],
                   "machine": timing and dataclasses.asdict(timing["load"]),
                   "params": {"tolerance": params.tolerance, "max_p99_ms": params.max_p99_ms,
                              "max_latency_ratio": params.max_latency_ratio,
                              "min_latency_excess_ms": params.min_latency_excess_ms,
                              "quiet_busy_share": params.quiet_busy_share},
                   "seconds": time.perf_counter() - started}
        (staging / names.INFRA_BLESSING_FILE).write_text(json.dumps({"blessed": passed, "reason": reason}) + "\n")
        (staging / names.INFRA_VALIDATION).write_text(json.dumps(figures, indent=2) + "\n")
        card = os.path.join(evaluation_dir, names.MODEL_CARD)
        text = open(card).read() if os.path.exists(card) else ""
        (staging / names.MODEL_CARD).write_text(text.rstrip("\n") + "\n\n" + model_card.infra_validation_section(figures))
    return figures


def check(params: InfraValidateParams) -> None:
    """Settings the measurement cannot work with are errors that name the key."""
    problems = [f"infra_validate.{key} must be at least 1, not {getattr(params, key)}"
                for key in ("latency_requests",) if getattr(params, key) < 1]
    problems += [f"infra_validate.rate_rps must be above 0, not {params.rate_rps}"] if params.rate_rps <= 0 else []
    if problems:
        raise ValueError("params: " + "; ".join(problems))


@flywheel_component
def infra_validate_component(examples: dsl.Input[dsl.Dataset], model: dsl.Input[dsl.Model],
                             evaluation: dsl.Input[dsl.Artifact], params: dict, push: dict,
                             validation: dsl.Output[dsl.Artifact], model_card: dsl.Output[dsl.Markdown]):
    """Load the candidate in a sandboxed model server, check its answers and its latency beside
    the production version evaluate compared with (params.yaml's `infra_validate` section; `push`
    names the model and its repository)."""
    import math
    import os
    import shutil

    from components.infra_validate import production_version_dir, run
    from components.kfp_component import set_metadata
    from flywheel import names
    from flywheel import params as flywheel_params

    settings = flywheel_params.build(flywheel_params.InfraValidateParams, params, "infra_validate")
    pushing = flywheel_params.build(flywheel_params.PushParams, push, "push")
    production = production_version_dir(evaluation.path, pushing.model_repository, pushing.model_name)
    figures = run(examples.path, model.path, evaluation.path, validation.path, settings, pushing.model_name, production)
    print(f"[infra_validate] {'passed' if figures['passed'] else 'FAILED'}: {figures['reason']}", flush=True)
    shutil.copyfile(os.path.join(validation.path, names.MODEL_CARD), model_card.path)
    latency = figures["latency"] or {}
    production_latency = figures["production_latency"] or {}
    difference = figures["max_abs_difference"]
    # KFP metadata is JSON: no NaN (kfp.local refuses it with SerializeToJsonError); None when not measured.
    set_metadata(validation, {"blessed": figures["passed"], "reason": figures["reason"],
                              "load_seconds": figures["load_seconds"], "seconds": figures["seconds"],
                              "p50_ms": latency.get("p50_ms"), "p99_ms": latency.get("p99_ms"),
                              "production_p99_ms": production_latency.get("p99_ms"),
                              "rate_rps": latency.get("rate_rps"),
                              "max_abs_difference": difference if difference is not None and math.isfinite(difference)
                              else None})
