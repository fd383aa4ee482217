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
    """The generator of the default dataset (flywheel/datagen.py, DVC stage `generate`)."""
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


@dataclasses.dataclass(frozen=True)
class SchemaParams:
    # The reviewed schema of the default dataset, shipped with the package. A relative path is
    # relative to the package root (the repository checkout, or site-packages in an image);
    # "" infers a schema from the training split.
    curated: str = "flywheel/curated/schema.pbtxt"


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


@dataclasses.dataclass(frozen=True)
class TrainParams:
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 0.003
    hidden_units: tuple[int, ...] = (32, 16)
    max_vocab: int = 100
    seed: int = 7


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    slice_feature: str = "payment_type"
    min_auc: float = 0.6                  # absolute floor, binary classification
    min_accuracy: float = 0.0             # absolute floor, multiclass classification
    max_rmse: float = 0.0                 # absolute ceiling for regression; 0 = none
    allowed_regression: float = 0.01      # how much worse than production a candidate may be, in units of the primary metric


@dataclasses.dataclass(frozen=True)
class PushParams:
    # A relative repository path is relative to the working directory of whoever reads it; local
    # runs make it absolute before starting (pipelines/cli.py).
    model_repository: str = "model_repository"
    model_name: str = names.DEFAULT_MODEL_NAME


@dataclasses.dataclass(frozen=True)
class MonitoringParams:
    window_rows: int = 2000
    # Online drift as dashboards and alerts show it: TFDV's L-infinity (categorical) and approximate
    # Jensen-Shannon (numeric) over the served window, above these.
    drift_linf: float = 0.1
    drift_jsd: float = 0.15
    log_dir: str = "runs/prediction_log"
    log_max_bytes: int = 64 * 1024 * 1024
    log_backups: int = 5
    queue_size: int = 10000
    max_body_bytes: int = 4 * 1024 * 1024
    upstream_timeout_s: float = 5.0
    version_poll_s: float = 5.0           # how often the sidecar asks TF Serving which version it serves
    pii_fields: tuple[str, ...] = ()      # redacted in the prediction log; () = ingest.pii_columns
    feedback_window: int = 1000           # live accuracy over the last N labelled rows
    feedback_remember: int = 100_000      # request ids kept for joining feedback


@dataclasses.dataclass(frozen=True)
class Params:
    data: DataParams = DataParams()
    ingest: IngestParams = IngestParams()
    schema: SchemaParams = SchemaParams()
    validate: ValidateParams = ValidateParams()
    drift: DriftParams = DriftParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    push: PushParams = PushParams()
    monitoring: MonitoringParams = MonitoringParams()


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
    """Read params.yaml; missing sections or keys take the defaults above."""
    path = Path(path)
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
