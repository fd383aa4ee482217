"""Canary and shadow releases in the sidecar: who answers a prediction, what is mirrored, and when
a canary is promoted or rolled back.

After KServe's canary (a share of traffic to the new revision, the last good one kept) and
Seldon's shadow (mirrored requests whose answers are discarded). The model repository's version
labels (flywheel/model_repository.py) say which version is production, canary and shadow:

- a prediction that names no version goes to the canary with probability canary_percent/100,
  else to production (the sidecar names the version it chose, so the log and the metrics know
  which version answered);
- with a shadow labelled, every prediction production answers is sent again to the shadow
  version in the background; its answer is compared with production's (score difference, class
  agreement), counted, and discarded;
- per label and version: requests, 5xx errors, latency, and the accuracy expected from the
  answers' probabilities (CBPE, flywheel/evaluation/performance_estimation.py, with the calibration map
  stored beside each version);
- once the canary has answered `min_requests` and taken traffic for `min_seconds`, it is compared
  with production on the same window (the window starts when the canary does): promoted (the
  production label moves to it) when its error ratio, p99 latency and expected accuracy are not
  worse than production's by more than the allowed margins, else rolled back (its label is
  removed). The decision and its figures are filed with the repository's run records.

Several sidecars decide independently on their own windows; the first decision moves the label
and the others follow it at their next read of the labels.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flywheel import bundle, names, storage
from flywheel import model_repository as repo
from flywheel.evaluation import performance_estimation as pe
from flywheel.params import ReleaseParams
from monitoring import metrics as m

log = logging.getLogger(__name__)
WINDOW_ROWS = 5000        # predictions kept per version for the estimate
WINDOW_LATENCIES = 10000  # latencies kept per version for the p99
PROMOTE, ROLLBACK = "promote", "rollback"


def answer_probabilities(payload: bytes, task: str) -> np.ndarray | None:
    """P(positive) per row (binary) or rows x classes (multiclass) from a TF Serving predict
    answer in row ("predictions") or columnar ("outputs") form; None when it has none."""
    key = names.OUTPUT_SCORE if task == names.BINARY else names.OUTPUT_PROBABILITIES
    try:
        document = json.loads(payload)
        if "predictions" in document:
            values = [p[key] if isinstance(p, dict) else p for p in document["predictions"]]
        else:
            outputs = document["outputs"]
            values = outputs[key] if isinstance(outputs, dict) else outputs
        array = np.asarray(values, dtype=np.float64)
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if task == names.BINARY:
        return array.reshape(-1)
    return array if array.ndim == 2 else None


@dataclass
class VersionWindow:
    """What one version did since the current canary started."""
    version: int
    requests: int = 0
    errors: int = 0
    latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=WINDOW_LATENCIES))
    rows: collections.deque = field(default_factory=lambda: collections.deque(maxlen=WINDOW_ROWS))

    def p99(self) -> float:
        return float(np.percentile(self.latencies, 99)) if self.latencies else float("nan")

    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass
class VersionModel:
    """What the estimate needs of a version: its task and calibration (None when untrusted or absent)."""
    task: str
    calibration: pe.Calibration | None
    trusted: bool


def load_version_model(repository: str, model_name: str, version: int) -> VersionModel:
    version_dir = repo.version_dir(repository, model_name, version)
    task = bundle.read_metadata(version_dir).get("task", "")
    path = bundle.path(version_dir, names.CALIBRATION)
    if not storage.exists(path):
        return VersionModel(task, None, False)
    found = json.loads(storage.read_bytes(path))
    calibration = pe.Calibration.from_dict(found["calibration"]) if found.get("calibration") else None
    return VersionModel(task, calibration, bool(found.get("check", {}).get("trustworthy")))


class Router:
    """The release state of one sidecar; the app calls `choose`, `observed` and `mirror`, and
    runs `run_forever` beside its other jobs."""

    def __init__(self, settings: ReleaseParams, repository: str, model_name: str, registry: CollectorRegistry,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 load_model: Callable[[str, str, int], VersionModel] = load_version_model):
        self.settings = settings
        self.repository, self.model_name = repository, model_name
        self.clock, self.rng, self.load_model = clock, rng or random.Random(), load_model
        self.labels: dict[str, int] = {}
        self.labelled = False              # the repository records labels (else production = highest available)
        self.windows: dict[int, VersionWindow] = {}
        self.models: dict[int, VersionModel] = {}
        self.canary_since: float | None = None
        self.shadow_tasks: set[asyncio.Task] = set()
        self.last_decision: dict | None = None
        self.requests = Counter(m.RELEASE_REQUESTS, "Predictions answered per version label (shadow: mirrored)",
                                ["model", "label", "version", "outcome"], registry=registry)
        self._children: dict[tuple, tuple] = {}   # (label, version, outcome) -> (requests, latency) children
        self.latency = Histogram(m.RELEASE_LATENCY, "Upstream time per prediction, per version label",
                                 ["model", "label"], registry=registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        self.estimated = Gauge(m.ESTIMATED_ACCURACY, "Accuracy expected from the answers' calibrated probabilities "
                               "(CBPE) over the version's window; bound: estimate, low, high (95%)",
                               ["model", "label", "version", "bound"], registry=registry)
        self.estimated_auc = Gauge(m.ESTIMATED_ROC_AUC, "ROC AUC expected from the answers' calibrated probabilities "
                                   "(binary models)", ["model", "label", "version"], registry=registry)
        self.shadow_difference = Histogram(m.SHADOW_SCORE_DIFFERENCE, "|shadow score - production score| per row",
                                           ["model"], registry=registry,
                                           buckets=(1e-6, 1e-4, 1e-3, .01, .02, .05, .1, .2, .5, 1)).labels(model_name)
        self.shadow_agreement = Counter(m.SHADOW_ROWS, "Mirrored rows by whether the shadow's class agreed",
                                        ["model", "agreed"], registry=registry)
        self.decisions = Counter(m.RELEASE_DECISIONS, "Canary decisions taken by this sidecar", ["model", "decision"],
                                 registry=registry)
        for decision in (PROMOTE, ROLLBACK):
            self.decisions.labels(model_name, decision)
        self.label_version = Gauge(m.LABEL_VERSION, "Version each label names (-1: none)", ["model", "label"],
                                   registry=registry)

    # --- labels ------------------------------------------------------------------------------
    def refresh_labels(self) -> None:
        """Read the labels (a worker thread); a new canary starts a new comparison window."""
        labelled = storage.exists(repo.labels_path(self.repository, self.model_name))
        found = repo.labels(self.repository, self.model_name) if labelled else {}
        for version in set(found.values()) - set(self.models):
            try:
                self.models[version] = self.load_model(self.repository, self.model_name, version)
            except (OSError, ValueError, KeyError) as error:
                log.warning("version %d: no performance estimate (%s)", version, error)
                self.models[version] = VersionModel("", None, False)
        if found.get(names.CANARY) != self.labels.get(names.CANARY) or \
                found.get(names.PRODUCTION) != self.labels.get(names.PRODUCTION):
            self.windows = {}
            self.canary_since = self.clock() if found.get(names.CANARY) is not None else None
        self.labels, self.labelled = found, labelled
        for label in names.VERSION_LABELS:
            self.label_version.labels(self.model_name, label).set(found.get(label, -1))

    def production(self, available: list[int]) -> int | None:
        """The version unversioned predictions belong to: production's label, else the highest available."""
        version = self.labels.get(names.PRODUCTION)
        return version if version in available else (max(available) if available else None)

    # --- the request path --------------------------------------------------------------------
    def choose(self, production: int | None) -> int | None:
        """The version that answers a prediction naming none: the canary for its share, else production."""
        canary = self.labels.get(names.CANARY)
        if canary is not None and production is not None and self.rng.random() * 100.0 < self.settings.canary_percent:
            return canary
        return production

    def label_of(self, version: int | None) -> str:
        for label, labelled in self.labels.items():
            if labelled == version:
                return label
        return "unlabelled"

    def observed(self, version: int | None, status: int, seconds: float, payload: bytes) -> None:
        """A prediction answered by `version` (None: nobody could answer)."""
        if version is None:
            return
        label = self.label_of(version)
        outcome = "error" if status >= 500 else "ok"
        children = self._children.get((label, version, outcome))
        if children is None:   # labels() takes a lock and builds a key: once per combination, not per request
            children = self._children[(label, version, outcome)] = (
                self.requests.labels(self.model_name, label, str(version), outcome),
                self.latency.labels(self.model_name, label))
        children[0].inc()
        children[1].observe(seconds)
        if self.canary_since is None:
            return   # no canary: nothing to compare, no per-request parsing
        window = self.windows.setdefault(version, VersionWindow(version))
        window.requests += 1
        window.errors += status >= 500
        window.latencies.append(seconds)
        model = self.models.get(version)
        if status == 200 and model is not None and model.task in (names.BINARY, names.MULTICLASS):
            found = answer_probabilities(payload, model.task)
            if found is not None:
                window.rows.extend(found)

    def mirror(self, send: Callable, production_version: int | None, body: bytes, production_payload: bytes,
               status: int) -> None:
        """Send the request to the shadow version in the background; its answer is only compared."""
        shadow = self.labels.get(names.SHADOW)
        if shadow is None or not self.settings.shadow or status != 200 or \
                production_version != self.labels.get(names.PRODUCTION):
            return
        task = asyncio.get_running_loop().create_task(self._shadow(send, shadow, body, production_payload))
        self.shadow_tasks.add(task)
        task.add_done_callback(self.shadow_tasks.discard)

    async def _shadow(self, send: Callable, version: int, body: bytes, production_payload: bytes) -> None:
        started = self.clock()
        try:
            status, payload = await send(version, body)
        except Exception as error:   # the shadow never affects a client: count and move on
            status, payload = 599, str(error).encode()
        seconds = self.clock() - started
        self.requests.labels(self.model_name, names.SHADOW, str(version), "error" if status >= 500 else "ok").inc()
        self.latency.labels(self.model_name, names.SHADOW).observe(seconds)
        model = self.models.get(version)
        if status != 200 or model is None or model.task != names.BINARY:
            return
        ours, theirs = answer_probabilities(payload, model.task), answer_probabilities(production_payload, model.task)
        if ours is None or theirs is None or ours.shape != theirs.shape:
            return
        for difference, agreed in zip(np.abs(ours - theirs), (ours >= 0.5) == (theirs >= 0.5)):
            self.shadow_difference.observe(float(difference))
            self.shadow_agreement.labels(self.model_name, "yes" if agreed else "no").inc()

    # --- estimates and decisions -------------------------------------------------------------
    def estimate(self, version: int) -> pe.Estimate | None:
        window, model = self.windows.get(version), self.models.get(version)
        if window is None or model is None or not window.rows:
            return None
        rows = np.asarray(window.rows)
        if model.task == names.BINARY:
            return pe.estimate_binary(rows, model.calibration)
        return pe.estimate_multiclass(np.stack(window.rows)) if model.task == names.MULTICLASS else None

    def export_estimates(self) -> None:
        for version in list(self.windows):
            found = self.estimate(version)
            if found is None:
                continue
            label = self.label_of(version)
            for bound, value in (("estimate", found.accuracy), ("low", found.accuracy_low),
                                 ("high", found.accuracy_high)):
                self.estimated.labels(self.model_name, label, str(version), bound).set(value)
            if found.roc_auc is not None and np.isfinite(found.roc_auc):
                self.estimated_auc.labels(self.model_name, label, str(version)).set(found.roc_auc)

    def decide(self) -> dict | None:
        """Promote or roll back the canary when its window is complete; None while it is not."""
        canary, production = self.labels.get(names.CANARY), self.labels.get(names.PRODUCTION)
        if canary is None or production is None or self.canary_since is None:
            return None
        s = self.settings
        ours, theirs = self.windows.get(canary), self.windows.get(production)
        elapsed = self.clock() - self.canary_since
        if ours is None or theirs is None or ours.requests < s.min_requests or elapsed < s.min_seconds:
            return None
        figures = {"canary": canary, "production": production, "seconds": elapsed,
                   "requests": {"canary": ours.requests, "production": theirs.requests},
                   "error_ratio": {"canary": ours.error_ratio(), "production": theirs.error_ratio()},
                   "p99_s": {"canary": ours.p99(), "production": theirs.p99()}}
        reasons = []
        if ours.error_ratio() - theirs.error_ratio() > s.max_error_ratio_increase:
            reasons.append(f"error ratio {ours.error_ratio():.4f} vs production's {theirs.error_ratio():.4f}")
        if ours.latencies and theirs.latencies and ours.p99() > s.max_latency_ratio * theirs.p99():
            reasons.append(f"p99 {ours.p99() * 1000:.1f} ms vs production's {theirs.p99() * 1000:.1f} ms")
        mine, baseline = self.estimate(canary), self.estimate(production)
        trusted = all(self.models.get(v, VersionModel("", None, False)).trusted for v in (canary, production))
        if mine is not None and baseline is not None and not trusted:
            figures["estimated_accuracy"] = "not compared: evaluate did not trust the estimate of both versions"
        elif mine is not None and baseline is not None:
            figures["estimated_accuracy"] = {"canary": mine.to_dict(), "production": baseline.to_dict()}
            if baseline.accuracy - mine.accuracy > s.max_accuracy_drop:
                reasons.append(f"estimated accuracy {mine.accuracy:.4f} vs production's {baseline.accuracy:.4f}")
        decision = ROLLBACK if reasons else PROMOTE
        reason = ("worse than production: " + "; ".join(reasons)) if reasons else \
            "not worse than production on error ratio, p99 latency and estimated accuracy"
        return {"decision": decision, "reason": reason, "figures": figures}

    def apply(self, decided: dict) -> None:
        """Move the labels as decided and file the event (a worker thread)."""
        figures = decided["figures"]
        canary = figures["canary"]
        current = repo.labels(self.repository, self.model_name)
        if current.get(names.CANARY) != canary:
            return   # another sidecar decided first
        if decided["decision"] == PROMOTE:
            repo.set_label(self.repository, self.model_name, names.PRODUCTION, canary,
                           f"canary promoted: {decided['reason']}")
        else:
            repo.set_label(self.repository, self.model_name, names.CANARY, None,
                           f"canary rolled back: {decided['reason']}")
        repo.record_event(self.repository, self.model_name, {"decision": decided["decision"], "version": canary,
                                                             "reason": decided["reason"], "figures": figures})
        self.decisions.labels(self.model_name, decided["decision"]).inc()
        self.last_decision = decided
        log.info("canary v%d: %s (%s)", canary, decided["decision"], decided["reason"])
        self.refresh_labels()

    async def run_forever(self) -> None:
        """Read the labels, export the estimates, decide, in a worker thread every decide_every_s."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, self.step)
            except Exception:  # keep the release loop alive whatever a round meets
                log.exception("release round failed")
            await asyncio.sleep(min(self.settings.decide_every_s, self.settings.labels_poll_s))

    def step(self) -> dict | None:
        self.refresh_labels()
        self.export_estimates()
        decided = self.decide()
        if decided is not None:
            self.apply(decided)
        return decided
