"""Typed settings: the one definition of every Flywheel setting and its default.

Each section of params.yaml maps to one frozen dataclass below, and params.yaml holds the same
values (a test keeps them equal): DVC tracks the keys there, users edit them there. Unknown keys
are an error that names the section and key, so a typo cannot silently fall back to a default.
Steps receive their section as the dataclass; the pipeline passes each section as one dict
parameter whose compiled default is this file's value (pipelines/training_pipeline.py).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from flywheel import names

ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = ROOT / "params.yaml"


@dataclasses.dataclass(frozen=True)
class Shift:
    """A known perturbation applied to one span, so drift detection can be tested against truth."""
    span: int
    kind: str                     # covariate | concept | schema_skew | feature_skew | new_value
    feature: str = ""
    magnitude: float = 1.0


@dataclasses.dataclass(frozen=True)
class DataParams:
    """The generator of the default dataset (tools/datagen.py, DVC stage `generate`)."""
    rows_per_span: int = 5000
    spans: int = 3
    seed: int = 7
    start_date: str = "2026-01-05"
    span_days: int = 7
    output_dir: str = "data/spans"
    missing_rate: float = 0.02
    # Span 3 drifts (longer trips, more cash), so the default data has a drifted span to look at
    # (`make validate`, `make batch`, the drift report); `make run` trains on spans 1 and 2.
    shifts: tuple[Shift, ...] = (Shift(span=3, kind="covariate", feature="trip_miles", magnitude=0.5),
                                 Shift(span=3, kind="covariate", feature="payment_type", magnitude=0.2))


@dataclasses.dataclass(frozen=True)
class IngestParams:
    label: str = "big_tipper"
    pii_columns: tuple[str, ...] = ("rider_email",)
    pii_mode: str = "drop"        # drop | hash
    split_key: str = ""           # column hashed for the split; "" hashes the whole row
    split_buckets: tuple[int, int, int] = (80, 10, 10)   # train / eval / test, percent
    # Build the span from the feature store (featurestore/): the input is a table of entities and
    # labels, and each row gets the feature service's values as of its `feature_timestamp` column,
    # by a point-in-time join run with the feature store's own Python (`make feast`).
    features: bool = False
    feature_timestamp: str = "trip_start_timestamp"
    feast_python: str = ".venv-feast/bin/python"   # relative to the package root
    feature_repo: str = "featurestore/repo"          # the Feast repository, relative to the package root


@dataclasses.dataclass(frozen=True)
class SchemaParams:
    # The reviewed schema of the default dataset, shipped with the package. A relative path is
    # relative to the package root (the repository checkout, or site-packages in an image);
    # "" infers a schema from the training split.
    curated: str = "flywheel/curated/schema.pbtxt"
    # Columns kept in the data for fairness slices (evaluate.slice_features) but never given to
    # the model: left out of the SERVING environment, from which training takes its inputs.
    sensitive_features: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ValidateParams:
    # Drift against production is reported and does not block by default: it is why the flywheel
    # retrains, and the evaluator keeps a worse model out. Skew and schema anomalies always block.
    # How drift and skew are decided: the `drift` section.
    block_on_drift: bool = False


@dataclasses.dataclass(frozen=True)
class DriftParams:
    """Drift and skew decisions (flywheel.drift): a change is real (Holm-corrected KS / chi-squared)
    and material (an effect size at or above its threshold). Measured with `make bench-drift`
    (5 features, equal samples, 400 runs a cell; tables of 150-1,500 rows re-split 80/10/10)."""
    # Any-feature false alarms 4.0 / 3.5 / 3.0 / 0.0% at n = 50 / 200 / 1,000 / 5,000. At 0.01,
    # n = 1,000 catches a +0.25 sd mean shift in 94% and zeros 60% -> 70% in 89% (0.05: 98, 97%).
    alpha: float = 0.05
    # Train and eval come from one span, so every skew flag is a false block: 0.3-0.6% at 0.01
    # over every table size; at 0.05 it was 1.3-4.3%, rising with the rows.
    skew_alpha: float = 0.01
    # Values moved this many reference sd on average (W1). A +0.25 sd shift measures 0.25 and
    # sampling noise at n = 1,000 ~0.045; at 0.2 only 89% of +0.25 sd shifts at n = 1,000 pass.
    wasserstein_sd: float = 0.1
    # A value's share (a category, or a point mass such as zero) moved this much. A 10-point move
    # measures 0.10 +- 0.02 at n = 1,000, so 0.1 would pass it about as often as not (74%); 0.05
    # passes it always and makes a 5-point move borderline (69-75%).
    linf: float = 0.05
    # PSI (reference deciles / pooled levels): the usual "major shift" level, a second way to be
    # material for users who read PSI; the test still has to agree.
    psi: float = 0.25
    # Q of TFDV's quantiles histogram (StatsOptions(num_quantiles_histogram_buckets=Q)): at
    # n = 1,000 the KS distance is within 0.0016 and W1 within 0.006 sd of the exact CDF's
    # (Q = 10: 0.0067 and 0.05 sd).
    quantiles: int = 100
    # Joint drift (flywheel/drift/joint.py): Holm over the pairs of features at joint_alpha, and a
    # pair's correlation of normal scores moved by joint_min_change. At 0.05 the no-shift false
    # alarms measured 5.0% at n = 200 and 1,000 (200 runs): the tails of a correlation's test are
    # a little heavier than normal at those sizes. A +0.6 -> -0.6 flip moves the correlation ~1.2,
    # a 5% cluster 2 sd off it ~0.25; rates: make bench-drift, section 4.
    joint_alpha: float = 0.01
    joint_min_change: float = 0.1
    # Indicators per categorical feature in the joint check: its commonest levels whose share is
    # in [joint_min_share, 1 - joint_min_share] (a rarer level holds too few rows of a window).
    joint_levels: int = 4
    joint_min_share: float = 0.05


@dataclasses.dataclass(frozen=True)
class ScaleParams:
    """How the data steps (ingest, statistics, validate) hold a span: all in memory (the fastest
    for small data), streamed in record batches with bounded memory on one machine, or as an
    Apache Beam pipeline on a runner (Dataflow, Flink, Spark, a portable runner). The three paths
    write the same artifacts (flywheel/artifacts.py); measured with `make bench-scale`."""
    # auto | in_memory | streaming | beam. auto decides once, at ingest, by the input's size: in
    # memory up to `in_memory_max_bytes`, above that beam when `beam_runner` is not the local
    # DirectRunner, else streaming. Later steps follow what ingest chose (its metadata `engine`).
    mode: str = "auto"
    # The in-memory path peaks at about 14x the CSV's bytes (1M rows: 81 MB CSV, 1.16 GiB RSS), so
    # 128 MiB keeps a task under 2 GiB; below it the in-memory path is also the faster one.
    in_memory_max_bytes: int = 128 * 1024 * 1024
    batch_rows: int = 200_000     # rows per record batch (streaming and Beam); memory grows with it
    shard_rows: int = 2_000_000   # rows per Parquet shard ingest writes (streaming)
    beam_runner: str = "DirectRunner"   # DataflowRunner | FlinkRunner | SparkRunner | PortableRunner | DirectRunner
    # Passed through to the runner as command-line pipeline options, e.g. ["--project=p",
    # "--region=europe-west1", "--temp_location=gs://bucket/tmp"] for Dataflow.
    beam_options: tuple[str, ...] = ()
    # Processes a step uses on one machine: the streaming statistics' workers (from 1M rows a
    # split), the DirectRunner's workers (multi_processing mode).
    workers: int = 2


@dataclasses.dataclass(frozen=True)
class TrainParams:
    # The fit is sized to the data (components/train.py fit_plan): batches of about 1/8 of the
    # train rows up to batch_size, and at least min_steps gradient steps, between epochs and max_epochs.
    epochs: int = 8
    batch_size: int = 256
    min_steps: int = 128
    max_epochs: int = 200
    patience: int = 10                    # epochs without a better eval loss before stopping; 0 = never stop early
    learning_rate: float = 0.003
    hidden_units: tuple[int, ...] = (32, 16)
    max_vocab: int = 100                  # values kept per string column (network and trees); the rest: one "other"
    seed: int = 7
    # --- model families (components/train.py): each is trained on the train split and scored on the
    # eval split; the selection rule picks one, and only that one is exported.
    # linear: evaluate's linear baseline (ridge, or L2 logistic by Newton) on the model's own encoding;
    # gbt: gradient-boosted trees (TensorFlow Decision Forests); wide_deep: the Keras network above.
    families: tuple[str, ...] = ("linear", "gbt", "wide_deep")
    # "simplest": the first family in `families` whose eval score is within the interval of the best
    # one (a paired bootstrap on the eval rows), so a model more complex than linear must earn its
    # place beyond noise; "best": the best eval score, however slight the margin. `simplest` requires
    # that margin only below simplest_below_rows train+eval rows: on larger tables the trees' small
    # eval margins add up to real test gains (docs/benchmarks.md, `make bench-models`, table rand hie:
    # requiring the margin there picks linear, 5.1% behind LightGBM; the best eval score picks the trees), and every
    # family still has to beat the linear baseline beyond noise on the test split to be blessed.
    selection: str = "simplest"
    simplest_below_rows: int = 10000
    selection_confidence: float = 0.95
    selection_resamples: int = 200
    # Training budget in seconds for all families: once spent, the families not yet started are
    # skipped (and the run summary says so). The wide-and-deep network is also skipped on more
    # train rows than wide_deep_max_rows, where trees win and the network would take the budget.
    # Below kfold_below_rows train+eval rows (an eval split of a few dozen rows cannot tell two
    # families apart) each family is scored out of fold, kfold folds of the train+eval rows.
    kfold: int = 5
    kfold_below_rows: int = 2000
    budget_s: float = 600.0
    wide_deep_max_rows: int = 100000
    gbt_trees: int = 300                  # at most; early stopping on a tenth of the train split


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    min_auc: float = 0.6                  # absolute floor, binary classification
    min_accuracy: float = 0.0             # absolute floor, multiclass classification
    max_rmse: float = 0.0                 # absolute ceiling for regression; 0 = none
    allowed_regression: float = 0.01      # how much worse than production a candidate may be, in units of the primary metric
    # false: the trivial and linear baselines are reported, not gating (a version served only to test
    # the release machinery, such as one trained on shuffled labels)
    baselines_gate: bool = True
    # --- fairness: slices of the test rows (flywheel/evaluation/fairness.py) ----------------------------------
    # Features sliced on one at a time; a name the data lacks is reported and skipped.
    slice_features: tuple[str, ...] = ("payment_type", "company", "trip_miles")
    slice_crosses: tuple[str, ...] = ("payment_type:trip_miles",)   # crossed pairs, "a:b"
    slice_bins: int = 4                   # quantile bins of a numeric feature with more distinct values
    max_slices: int = 20                  # slices per feature or pair; the rarest are pooled as "(other)"
    min_slice_rows: int = 30              # smaller slices are reported as too small, never judged
    confidence: float = 0.95              # of the intervals; 1 - confidence is the gate's family-wise false-alarm rate
    bootstrap_resamples: int = 200        # per slice: the cost is resamples x rows...
    bootstrap_max_rows: int = 10000       # ...with rows capped here (a subsample, the interval rescaled)
    bootstrap_seed: int = 7
    # --- fairness: criteria (flywheel/evaluation/fairness.py) ----------------------------------------------
    # Each judged slice is compared with the other slices of its grouping, the floor and
    # production; every comparison is a one-sided test, and Holm's correction over all of them
    # keeps the chance of refusing a model fair by construction at most 1 - confidence
    # (`make bench-fairness` measures it). A comparison refuses when it is significant after the
    # correction and larger than allowed.
    # Which measures gate beside the floor and production: "primary" (the task's metric),
    # "tpr" (equal opportunity), "fpr" (with tpr: equalized odds), "selection_rate" (the
    # four-fifths rule); binary classifiers report all four, with intervals, gating or not.
    slice_gates: tuple[str, ...] = ("primary",)
    # How much worse than the other slices a slice's primary metric may be. A model that knows
    # nothing about one group shows about 0.3 AUC.
    max_slice_gap: float = 0.15
    max_rate_gap: float = 0.1             # true- or false-positive rate, worse than the others' by at most
    min_selection_ratio: float = 0.8      # slice's selection rate / the others', at least
    min_slice_auc: float = 0.55           # floor per slice (significantly below it refuses)
    min_slice_accuracy: float = 0.0       # the same for multiclass accuracy; 0 = none
    max_slice_rmse: float = 0.0           # ceiling per slice for regression; 0 = none
    # How much worse than production a candidate may be on any slice (paired on the same rows).
    slice_allowed_regression: float = 0.05
    # Confidence-based performance estimation (flywheel/evaluation/performance_estimation.py): a calibration
    # map is fitted on the eval split and checked on the test split; the estimate is trusted when
    # the calibrated expected calibration error stays within its bound and the estimated accuracy
    # is within max_estimate_error (plus the test split's own 95% sampling band) of the realised.
    # The error bound is loose on purpose: on a test split of ~500 rows, sampling noise alone puts
    # a 10-bin calibration error near 0.05; the accuracy gap is the figure the estimate is used for.
    calibration_bins: int = 10
    max_calibration_error: float = 0.1
    max_estimate_error: float = 0.02


@dataclasses.dataclass(frozen=True)
class InfraValidateParams:
    """Infra validation before push (components/infra_validate.py), after TFX's InfraValidator: the
    candidate is loaded in a model server of its own, answers the test split, and is timed."""
    # Path of TF Serving's `tensorflow_model_server`; "" runs the development model server (devserver/).
    server_binary: str = ""
    load_timeout_s: float = 180.0         # process start and model load, at most
    batch_rows: int = 256                 # test rows per predict request of the equality check
    tolerance: float = 1e-5               # |served score - evaluate's score|, at most, on every row
    latency_requests: int = 300           # one-row requests of the latency check, per server...
    rate_rps: float = 50.0                # ...sent to each at this rate, open loop, in pairs with production's
    # Slower than production, by the median over request pairs, refuses only when both hold:
    max_latency_ratio: float = 1.5        # candidate's time / production's above this...
    min_latency_excess_ms: float = 5.0    # ...and the candidate more than this much slower
    # The absolute objective (p99 of the candidate's requests), judged only on a quiet machine:
    # one where other work used at most `quiet_busy_share` of the cores during the measurement.
    max_p99_ms: float = 100.0
    quiet_busy_share: float = 0.25


@dataclasses.dataclass(frozen=True)
class PushParams:
    # A relative repository path is relative to the working directory of whoever reads it; local
    # runs make it absolute before starting (pipelines/cli.py).
    model_repository: str = "model_repository"
    model_name: str = names.DEFAULT_MODEL_NAME
    # The label a new blessed version gets: "canary" (production keeps its version until the
    # sidecar promotes the canary) or "production" (straight to production). The first version of
    # a model always becomes production: there is nothing to compare a canary with.
    release_as: str = "canary"


@dataclasses.dataclass(frozen=True)
class ReleaseParams:
    """Canary and shadow releases in the sidecar (monitoring/routing.py), after KServe's canary
    and Seldon's shadow: who gets which version, and when a canary is promoted or rolled back."""
    canary_percent: float = 10.0          # share of predictions answered by the canary version
    shadow: bool = True                   # mirror every prediction to the shadow version (answers discarded)
    min_requests: int = 200               # the canary decides after this many answered requests...
    min_seconds: float = 600.0            # ...and this much time since it started taking traffic
    max_error_ratio_increase: float = 0.01  # canary's 5xx share may exceed production's by this much
    max_latency_ratio: float = 1.5        # canary's p99 may be this many times production's
    max_accuracy_drop: float = 0.02       # canary's live (else estimated) accuracy may be this much lower
    min_labelled_rows: int = 100          # live accuracy is compared from this many labelled rows; else the estimate
    decide_every_s: float = 5.0           # how often the sidecar looks at the canary
    labels_poll_s: float = 5.0            # how often the sidecar reads the version labels


@dataclasses.dataclass(frozen=True)
class MonitoringParams:
    """The monitoring sidecar (`python -m monitoring`) and the alert and dashboard thresholds
    rendered from these values (`python -m monitoring.rendering`). Every bound is per pod."""
    # --- drift --------------------------------------------------------------------------------
    window_rows: int = 2000               # rows in each pod's sliding drift window
    window_rows_per_request: int = 100    # rows one request adds to the window at most (a random sample)
    min_drift_rows: int = 200             # alerts and dashboards ignore drift measured on fewer rows
    fleet_interval_s: float = 10.0        # how often a pod publishes its window and recomputes the fleet's drift
    fleet_stale_s: float = 60.0           # a pod's published window older than this is left out of the fleet's
    export_levels: int = 20               # categorical levels per feature exported as Prometheus series; the rest pooled
    rules_window: str = "30m"             # window of the fleet's recorded distances and feedback accuracy in Prometheus
    # --- prediction log -------------------------------------------------------------------------
    log_dir: str = "runs/prediction_log"  # local segments before they are shipped (an emptyDir in a pod)
    log_destination: str = ""             # where segments and feedback go; "" = <model_repository>/<model>/logs
    segment_max_bytes: int = 16 * 1024 * 1024   # a local segment is closed and shipped at this size...
    segment_max_age_s: float = 300.0      # ...or at this age, whichever comes first
    local_log_max_bytes: int = 256 * 1024 * 1024  # unshipped segments kept locally; beyond, the oldest are deleted (counted)
    ship_retry_s: float = 10.0            # wait before shipping a segment again after a failure
    queue_size: int = 10000               # records waiting for the observer; beyond, new ones are dropped (counted)
    queue_bytes: int = 64 * 1024 * 1024   # request and response bytes waiting for the observer, at most
    linger_s: float = 0.05                # the observer works on everything queued this often: one wake-up per batch, not per request
    drain_timeout_s: float = 10.0         # on SIGTERM: time to finish queued records, then to ship what is closed
    # --- proxy ------------------------------------------------------------------------------------
    max_body_bytes: int = 4 * 1024 * 1024  # request body, after Content-Encoding is undone
    max_in_flight: int = 256              # concurrent requests; beyond, 503 with Retry-After
    max_in_flight_bytes: int = 64 * 1024 * 1024  # request body bytes received and held at once; beyond, 503
    max_connections: int = 4096           # open client connections; beyond, a new one gets 503 and is closed
    connect_timeout_s: float = 1.0        # to TF Serving on loopback
    upstream_timeout_s: float = 5.0       # TF Serving's whole answer
    header_timeout_s: float = 10.0        # a request line and headers, from their first byte
    body_timeout_s: float = 30.0          # a client's whole request body...
    min_body_rate_bytes_s: int = 16384    # ...which, after body_grace_s, must arrive at least this fast on average
    body_grace_s: float = 2.0             # (else 408 and the connection closed: slow bodies hold no budget)
    idle_timeout_s: float = 75.0          # an idle keep-alive connection, or a new one that sends nothing
    # A kept-alive client connection this old gets `Connection: close` on its next answer: a
    # Service balances connections, not requests, so without this a client that keeps its
    # connections never reaches the pods the HPA adds.
    connection_max_age_s: float = 30.0
    # On SIGTERM, answer this long more, every answer with `Connection: close`, before closing what
    # is left: a kept-alive client then moves to another pod after its answer, instead of sending
    # its next request on a connection closed under it (which fails even a client that is polite).
    closing_s: float = 2.0
    ready_after_failures: int = 3         # readiness drops after this many consecutive failed upstream calls
    version_poll_s: float = 5.0           # how often the sidecar asks TF Serving which version it serves
    # --- privacy ----------------------------------------------------------------------------------
    pii_fields: tuple[str, ...] = ()      # keys redacted at any depth, any case; () = ingest.pii_columns
    pii_patterns: tuple[str, ...] = (     # string values matching any of these are redacted (e-mail, phone)
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",   # any domain with a dot: a@b.c too
        # North American numbers, separated or a bare run of 10 digits (an area code starts with
        # 2-9: a 10-digit Unix time, 1...., is not one), with an optional +1 or "1 " prefix.
        r"(?<![\w.])(?:\+1[ .-]?|1[ .-])?\(?[2-9]\d{2}\)?[ .-]?\d{3}[ .-]?\d{4}(?![\w.])",
        # International: + and a country code, then 8 to 15 digits in all, grouped as written.
        r"(?<![\w+])\+(?=(?:[ .()-]*\d){8,15}(?![ .()-]*\d))[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,7}(?!\w)",
    )
    # --- feedback ---------------------------------------------------------------------------------
    feedback_window: int = 1000           # live accuracy over the last N labelled rows (per pod)
    feedback_remember: int = 100_000      # predictions kept for joining feedback (per pod)...
    feedback_memory_bytes: int = 32 * 1024 * 1024  # ...and the bytes they may take
    feedback_poll_s: float = 1.0          # how often a pod reads the fleet's feedback log for its predictions
    feedback_pending_s: float = 60.0      # feedback read before its prediction was processed waits this long
    token_file: str = ""                  # file holding the bearer token feedback must present...
    feedback_token_required: bool = False  # ...true: while it holds none, feedback is refused (503), not open
    # --- alert thresholds -------------------------------------------------------------------------
    min_live_accuracy: float = 0.7        # fleet accuracy on feedback below this alerts...
    min_feedback_rows: int = 50           # ...when at least this many labelled rows arrived in rules_window
    latency_slo_s: float = 0.5            # p99 seen by clients
    max_error_ratio: float = 0.05         # share of 5xx answers
    max_anomaly_rate: float = 0.1         # schema anomalies per second, of one feature and kind
    model_max_age_days: float = 8.0       # spans arrive weekly (data.span_days): a week and a day
    ship_stall_s: float = 900.0           # oldest unshipped log segment older than this alerts


@dataclasses.dataclass(frozen=True)
class FeatureStoreParams:
    """Entity features at serving time (monitoring/online_features.py): a predict request whose
    rows carry `entity` gets the feature service's values from Feast's HTTP feature server."""
    server_url: str = ""                  # e.g. http://127.0.0.1:6566 (`make feast-serve`); "" = off
    feature_service: str = "taxi_area"
    entity: str = "pickup_area"
    timeout_s: float = 1.0                # a slower feature server answers 503, not a late prediction
    # Freshness: the alert FlywheelOnlineFeaturesStale fires when the newest value served is older
    # (the feature view's TTL: a day's aggregates are stamped at its end, so a day and a bit is normal).
    max_age_s: float = 2 * 86400.0


@dataclasses.dataclass(frozen=True)
class BatchParams:
    """Offline predictions: `make batch` scores a table with a pushed version in record batches
    (components/batch_score.py), and the sidecar answers predict requests by key from the latest
    batch (monitoring/lookup.py), falling back to the online model."""
    # Column whose value names a row (e.g. a trip id); "" keys rows by their number in the input.
    # The sidecar's lookup needs a key column: requests carry it in every row.
    key_column: str = ""
    batch_rows: int = 50_000              # rows read, checked and scored at a time; memory grows with it
    shard_rows: int = 1_000_000           # rows per predictions Parquet shard
    # Rows that cannot be scored as the model was trained (text in a numeric feature, a number outside
    # its domain, a required feature or the key missing) are listed and left out; above this share
    # of the input the run fails and writes nothing.
    max_bad_share: float = 0.01
    max_listed_bad_rows: int = 10_000     # bad rows written to bad_rows.parquet (all are counted)
    block_on_drift: bool = False          # drift against the version's baseline is reported; true: it fails the run
    output_root: str = ""                 # where runs are written; "" = <model repository>/<model>/batch
    # --- the sidecar's lookup -----------------------------------------------------------------------
    max_age_s: float = 2 * 86400.0        # an answer scored longer ago than this goes to the online model
    require_served_version: bool = True   # answers of another version than the served one go online too
    reload_s: float = 30.0                # how often the sidecar looks for a newer batch
    local_dir: str = "runs/lookup"        # where the sidecar keeps a local copy of a remote batch's index
    # Alert when more than this share of keyed requests fall back to the online model (rules_window).
    max_fallback_share: float = 0.5


@dataclasses.dataclass(frozen=True)
class TriggerParams:
    """The retraining trigger (`python -m trigger`): Alertmanager's webhook in, a training run on
    a span built from the serving logs out (pipelines/span_from_logs.py)."""
    # Alerts that start a run; any other alert in a notification is recorded and ignored.
    alerts: tuple[str, ...] = ("FlywheelFeatureDriftSustained", "FlywheelPredictionDrift", "FlywheelLiveAccuracyDrop")
    cooldown_s: float = 3600.0            # no new run within this long after the last one started
    min_labeled_rows: int = 500           # fewer labeled rows in the logs: no run, the trigger says so and waits
    lookback_days: int = 7                # the span joins the logs of this many days back to today (UTC)
    span_dir: str = "data/log_spans"      # spans from the logs (`dvc add`ed; data/spans is the generate stage's)
    kfp_host: str = ""                    # "" = run here with kfp.local; else the KFP API endpoint to submit to
    max_body_bytes: int = 1024 * 1024     # a webhook body larger than this is refused (413)
    run_timeout_s: float = 6 * 3600.0     # a run not finished by then is counted failed and no longer blocks


@dataclasses.dataclass(frozen=True)
class LoopParams:
    """`make loop`: the whole flywheel on loopback with short windows. Only the copies of the
    alert rules the loop's Prometheus loads are shortened; monitoring/rules stays as rendered."""
    alert_for: str = "10s"                # every alert rule's `for:` in the loop
    rules_window: str = "2m"              # every range window ([30m], [5m], ...) in the loop's rules
    scrape_s: float = 1.0                 # Prometheus' scrape and rule evaluation interval
    group_wait_s: float = 1.0             # Alertmanager: wait before the first notification of a group
    repeat_interval: str = "1m"           # Alertmanager: resend a still-firing group this often (the trigger dedups)
    traffic_rows: int = 2400              # rows of the shifted span replayed as traffic
    request_rows: int = 20                # rows per predict request
    feedback_delay_s: float = 1.0         # ground truth is posted this long after its prediction
    fleet_interval_s: float = 1.0         # the sidecar's drift recomputation in the loop
    segment_max_age_s: float = 3.0        # the sidecar ships a segment at this age in the loop
    epochs: int = 4                       # training epochs of the loop's runs (exactly: min_steps is set to 0)
    min_labeled_rows: int = 1000          # the trigger's threshold in the loop
    timeout_s: float = 300.0              # the loop gives up waiting for the next stage after this long


@dataclasses.dataclass(frozen=True)
class Params:
    data: DataParams = DataParams()
    ingest: IngestParams = IngestParams()
    schema: SchemaParams = SchemaParams()
    validate: ValidateParams = ValidateParams()
    drift: DriftParams = DriftParams()
    scale: ScaleParams = ScaleParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    infra_validate: InfraValidateParams = InfraValidateParams()
    push: PushParams = PushParams()
    release: ReleaseParams = ReleaseParams()
    monitoring: MonitoringParams = MonitoringParams()
    batch: BatchParams = BatchParams()
    feature_store: FeatureStoreParams = FeatureStoreParams()
    trigger: TriggerParams = TriggerParams()
    loop: LoopParams = LoopParams()


def build(cls: type, values: dict[str, Any] | None, where: str | None = None):
    """A section dataclass from a mapping (params.yaml, a pipeline dict parameter); unknown keys
    and wrongly typed values are errors naming the section and key."""
    where = where or cls.__name__
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"params: unknown key(s) {unknown} in section '{where}'; known: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        default = fields[name].default if fields[name].default is not dataclasses.MISSING else None
        if name == "shifts":
            value = tuple(build(Shift, s, f"{where}.shifts[{i}]") for i, s in enumerate(value or []))
        elif isinstance(default, tuple) and isinstance(value, (list, tuple)):
            value = tuple(_integral(v) if default and isinstance(default[0], int) else v for v in value)
        elif isinstance(default, int) and not isinstance(default, bool):
            value = _integral(value, f"{where}.{name}")
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"params: {where}.{name} must be true or false, not {value!r}")
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif default is not None and not isinstance(default, tuple) and not isinstance(value, type(default)):
            raise ValueError(f"params: {where}.{name} must be a {type(default).__name__}, not {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


def _integral(value, where: str = "a list element"):
    """An integer setting given as a float, as a pipeline's dict parameter carries every number
    (protobuf Struct): 8.0 -> 8; 8.5 is an error."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"params: {where} must be an integer, not {value!r}")
    return value


def section_dict(section) -> dict:
    """A section as plain JSON-able values (tuples as lists): what a pipeline dict parameter holds."""
    return json.loads(json.dumps(dataclasses.asdict(section)))


def load(path: str | Path = PARAMS_FILE) -> Params:
    """Read params.yaml; missing sections or keys take the defaults above. The project's own
    params.yaml may be absent (all defaults); a file named by the caller must exist, so a typo in
    `--params` is an error rather than a run on defaults."""
    path = Path(path)
    if not path.exists() and path.absolute() != PARAMS_FILE.absolute():
        raise FileNotFoundError(f"{path}: no such params file")
    raw = yaml.safe_load(path.read_text()) if path.exists() else {}
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of sections, found {type(raw).__name__}")
    sections = {f.name for f in dataclasses.fields(Params)}
    unknown = sorted(set(raw) - sections)
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; known: {sorted(sections)}")
    built = {}
    for field in dataclasses.fields(Params):
        cls = type(getattr(Params(), field.name))
        built[field.name] = build(cls, raw.get(field.name) or {}, field.name)
    return Params(**built)


def override(params: Params, assignments: dict[str, Any]) -> Params:
    """params with `section.key` values replaced, e.g. {"train.epochs": 20} (make run SET=...)."""
    sections = {f.name: section_dict(getattr(params, f.name)) for f in dataclasses.fields(Params)}
    for dotted, value in assignments.items():
        section, _, key = dotted.partition(".")
        if section not in sections or not key:
            raise ValueError(f"params: '{dotted}' is not section.key; sections: {sorted(sections)}")
        sections[section][key] = value
    return Params(**{name: build(type(getattr(params, name)), values, name) for name, values in sections.items()})
