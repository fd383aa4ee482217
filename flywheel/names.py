"""Every name that crosses a module boundary, defined once (TFX standard_component_specs style).

Components, the pipeline, the model server, the sidecar, manifests tests and dashboards import
these instead of repeating string literals.
"""

# --- Splits written by ingest -------------------------------------------------------------
TRAIN = "train"
EVAL = "eval"
TEST = "test"
SPLITS = (TRAIN, EVAL, TEST)

# --- Files inside artifacts ---------------------------------------------------------------
SPLIT_FILE = "data.parquet"            # <examples>/<split>/data.parquet (in-memory ingest: one file)
SPLIT_SHARD = "data-{index:05d}-of-{count:05d}.parquet"  # <examples>/<split>/ shards (streaming, Beam)
STATS_FILE = "stats.pb"                # <statistics>/<split>/stats.pb  (binary DatasetFeatureStatisticsList)
PROFILES_FILE = "profiles.json"       # <statistics>/<split>/profiles.json: drift reference profiles (flywheel/drift)
TIME_COLUMNS_FILE = "time_columns.json"  # <statistics>/time_columns.json: {column: time format} the step decided
STATS_HTML = "statistics.html"         # the statistics page (self-contained); the KFP HTML artifact is this one file
SCHEMA_FILE = "schema.pbtxt"           # <schema>/schema.pbtxt (text Schema proto)
ANOMALIES_FILE = "anomalies.pbtxt"     # <anomalies>/anomalies.pbtxt (text Anomalies proto)
ANOMALY_REPORT = "report.json"         # <anomalies>/report.json (blocking / non-blocking list)
BLESSING_FILE = "blessing.json"        # <evaluation>/blessing.json
EVALUATION_FILE = "metrics.json"       # <evaluation>/metrics.json (everything evaluate measured)
PRODUCTION_FILE = "production.json"    # <production>/production.json (which version resolve found)
MEASUREMENTS_FILE = "measurements.json"  # <anomalies>/measurements.json (every drift and skew figure)
REPORT_HTML = "report.html"            # <anomalies>/report.html: the self-contained drift and skew page
PUSH_RESULT_FILE = "push.json"         # <pushed>/push.json
INFRA_BLESSING_FILE = "infra_blessing.json"  # <infra_validation>/infra_blessing.json

# --- What validate compares (anomaly kinds in report.json, keys of measurements.json) -------
DRIFT = "drift"                        # this run's train split against the production model's training split
SKEW = "skew"                          # this run's eval split against its train split
JOINT_DRIFT = "joint_drift"            # the same two samples as DRIFT, by how features move together
JOINT_SKEW = "joint_skew"              # the same two samples as SKEW, by how features move together

# --- TFDV schema environments -------------------------------------------------------------
ENV_TRAINING = "TRAINING"
ENV_SERVING = "SERVING"

# --- Model repository layout (TF Serving): <repository>/<model_name>/<integer version>/ ----
# TF Serving reads saved_model.pb and variables/; everything Flywheel keeps beside the model
# goes in assets.extra/, the SavedModel directory for files the graph does not use.
EXTRA_DIR = "assets.extra"
BASELINE_STATS = "baseline_stats.pb"         # training-split statistics (binary proto)
BASELINE_PROFILES = "baseline_profiles.json"     # drift reference profiles of the training split
BASELINE_SCHEMA = "schema.pbtxt"             # schema with TRAINING and SERVING environments
EVAL_PREDICTIONS = "eval_predictions.json"   # {"values": [...]} model scores on the test split
MODEL_CARD = "model_card.md"
FAIRNESS_CHART = "fairness.png"              # per-slice metric with intervals, shown in the model card
CALIBRATION = "calibration.json"             # CBPE's calibration map and its check (flywheel/evaluation/performance_estimation.py)
INFRA_VALIDATION = "infra_validation.json"   # what infra validation measured (components/infra_validate.py)
LABELS_FILE = "labels.json"                  # <repo>/<model>/labels.json: version labels and their history
TF_SERVING_CONFIG = "models.config"          # <repo>/<model>/models.config: TF Serving's config for those labels
DATA_CARD = "data_card.md"                   # also beside validate's report, with data_card.html
MODEL_METADATA = "flywheel.json"             # {"label": ..., "task": ..., "features": {...}, "data_version": ..., "metrics": {...}}
RUNS_DIR = "runs"                            # <repo>/<model>/runs/<run id>.json: one record per pipeline run
RUN_RECORD = "run.json"                      # the run's record, also in the pushed version's assets.extra/
STAGING_PREFIX = ".tmp-"                     # push writes <repo>/<model>/.tmp-<version>-<uuid>/ then renames

# --- Version labels (TF Serving's version_labels) ------------------------------------------
PRODUCTION = "production"
CANARY = "canary"
SHADOW = "shadow"
VERSION_LABELS = (PRODUCTION, CANARY, SHADOW)
TF_SERVING_MOUNT = "/models"                 # where a TF Serving container sees the model repository

# --- Offline predictions (make batch): <repo>/<model>/batch/<run>/, TF Serving ignores the directory
BATCH_DIR = "batch"                          # <repo>/<model>/batch/: one directory per batch run
BATCH_LATEST = "LATEST.json"                 # <repo>/<model>/batch/LATEST.json: the run the lookup serves, written last
BATCH_PREDICTIONS_DIR = "predictions"        # <run>/predictions/data-NNNNN-of-MMMMM.parquet: key, row, model, version, outputs
BAD_ROWS_FILE = "bad_rows.parquet"           # <run>/bad_rows.parquet: row, key, column, value, reason
BATCH_SUMMARY = "summary.json"               # <run>/summary.json: counts, timing, drifted features, output
LOOKUP_INDEX = "lookup.sqlite"               # <run>/lookup.sqlite: key -> the row's answer (with a key column)
ROW_COLUMN, KEY_COLUMN = "row", "key"        # columns of every predictions shard beside the outputs
MODEL_COLUMN, VERSION_COLUMN = "model", "version"

# --- Serving signature --------------------------------------------------------------------
SIGNATURE = "serving_default"
# Outputs of serving_default: "score" is P(positive) for binary tasks, the predicted value for
# regression; "probabilities" (multiclass only) holds one column per class in label vocabulary order.
OUTPUT_SCORE = "score"
OUTPUT_PROBABILITIES = "probabilities"

# --- Task types ---------------------------------------------------------------------------
BINARY = "binary"
MULTICLASS = "multiclass"
REGRESSION = "regression"

DEFAULT_MODEL_NAME = "taxi_tips"

# --- Container images ---------------------------------------------------------------------
# Default image every KFP component runs in; `pipelines compile --image` rewrites it in the
# compiled YAML so the committed YAML never depends on who compiled it.
COMPONENT_IMAGE = "ghcr.io/flywheel-mlops/flywheel-component:0.1.0"
SIDECAR_IMAGE = "ghcr.io/flywheel-mlops/flywheel-sidecar:0.1.0"
# Runs submitted to Kubeflow run as this account: manifests/base/pipeline-rbac.yaml grants it what the
# push step needs (KFP's own default, pipeline-runner, has none of it).
PIPELINE_SERVICE_ACCOUNT = "flywheel-pipeline"

# --- Files of the repository the processes share (paths relative to its root) ---------------
# The alert rules monitoring/rendering.py writes, which Prometheus loads: the cluster's, and the
# closed loop's with shortened windows (pipelines/loop_stack.py).
ALERT_RULES_FILE = "monitoring/rules/flywheel-alerts.rules.yml"
