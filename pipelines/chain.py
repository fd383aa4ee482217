"""The steps of the training pipeline chained in one process, without KFP.

The same step functions the KFP components wrap, called in the DAG's order with plain paths:
`make validate` stops after validate, the tests and benchmarks run as far as they need. It is
not a second pipeline: KFP's DAG (pipelines/training_pipeline.py) is what runs for real; this
chain exists so that a step can be exercised on exactly what the steps before it write.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from flywheel import artifacts, names
from flywheel.errors import DataError
from flywheel.params import Params

ORDER = ("ingest", "resolve", "statistics", "schema", "validate", "train", "evaluate", "infra_validate", "push")


@dataclasses.dataclass
class ChainRun:
    """Where each step wrote its output under `workdir`, and what it returned."""
    workdir: Path
    results: dict = dataclasses.field(default_factory=dict)   # step -> what its run() returned
    seconds: dict = dataclasses.field(default_factory=dict)   # step -> wall time of its run()

    def out(self, name: str) -> Path:
        return self.workdir / name

    @property
    def schema(self) -> Path:
        return artifacts.schema_file(self.out("schema"))


# Each step's output folder under the workdir, as chain.examples, chain.statistics, ...
ARTIFACTS = ("examples", "statistics", "production", "anomalies", "model", "evaluation", "infra_validation")
for _name in ARTIFACTS:
    setattr(ChainRun, _name, property(lambda self, name=_name: self.out(name)))


def run(data_path: str, workdir: str | Path, params: Params, until: str = "push", data_rev: str = "",
        baseline_stats: str | None = None, curated_schema: str | None = None, force: bool = False,
        run_id: str = "", record_block: bool = False, skip: tuple[str, ...] = ()) -> ChainRun:
    """Run the steps from ingest through `until`. Drift is measured against the resolved
    production model's baseline unless `baseline_stats` names another statistics file;
    `curated_schema` overrides params.schema.curated ("" infers). When validation blocks, the
    DataError is raised, or with `record_block` kept in results["blocked"] (the report in
    results["validate"]) and the chain stops there."""
    from components import evaluate, infra_validate, ingest, push, resolve, schema, statistics, train, validate
    from flywheel import schema_view

    if until not in ORDER:
        raise ValueError(f"until must be one of {ORDER}, not {until!r}")
    if set(skip) - {"infra_validate"}:
        raise ValueError(f"only infra_validate can be skipped, not {sorted(set(skip) - {'infra_validate'})}")
    steps = tuple(s for s in ORDER[:ORDER.index(until) + 1] if s not in skip)
    chain = ChainRun(Path(workdir))
    chain.workdir.mkdir(parents=True, exist_ok=True)
    curated = params.schema.curated if curated_schema is None else curated_schema
    repository, model_name = params.push.model_repository, params.push.model_name
    results = chain.results

    def step(name: str, fn, *args, **kwargs) -> None:
        started = time.perf_counter()
        results[name] = fn(*args, **kwargs)
        chain.seconds[name] = time.perf_counter() - started

    step("ingest", ingest.run, data_path, chain.examples, params.ingest, data_rev=data_rev, scale=params.scale)
    label, data_version = results["ingest"]["label"], results["ingest"]["data_version"]
    if "resolve" in steps:
        step("resolve", resolve.run, repository, model_name, chain.production)
    if "statistics" in steps:
        step("statistics", statistics.run, chain.examples, chain.statistics,
             schema_path=schema_view.resolve_curated(curated), label=label, quantiles=params.drift.quantiles,
             scale=params.scale, engine=results["ingest"].get("engine"), drift_params=params.drift)
    if "schema" in steps:
        step("schema", schema.run, chain.statistics, chain.out("schema"), label, curated)
    if "validate" in steps:
        baseline = baseline_stats if baseline_stats is not None else validate.production_baseline(chain.production)
        try:
            step("validate", validate.run, chain.statistics, chain.schema, chain.anomalies, baseline, params.validate,
                 source=data_path, examples_dir=chain.examples, drift_params=params.drift, label=label,
                 ingest=results["ingest"], scale=params.scale)
        except DataError as error:
            report = chain.anomalies / names.ANOMALY_REPORT
            if not record_block or not report.exists():
                raise
            results["blocked"], results["validate"] = str(error), json.loads(report.read_text())
            return chain
    if "train" in steps:
        step("train", train.run, str(chain.examples), str(chain.schema), label, str(chain.model), params.train,
             data_version=data_version, engine=results["ingest"].get("engine"))
    if "evaluate" in steps:
        step("evaluate", evaluate.run, str(chain.examples), str(chain.model), str(chain.evaluation), params.evaluate,
             production_dir=str(chain.production), model_name=model_name, data_version=data_version)
    if "infra_validate" in steps:
        step("infra_validate", infra_validate.run, str(chain.examples), str(chain.model), str(chain.evaluation),
             str(chain.infra_validation), params.infra_validate, model_name)
    if "push" in steps:
        step("push", push.run, str(chain.model), str(chain.evaluation), str(chain.statistics), str(chain.schema),
             repository, model_name, production_dir=str(chain.production), data_version=data_version, force=force,
             run_id=run_id, anomalies_dir=str(chain.anomalies),
             infra_validation_dir=str(chain.infra_validation) if "infra_validate" in steps else None,
             release_as=params.push.release_as,
             record={"ingest/examples": results["ingest"], "trigger": {"kind": "manual", "command": "in-process chain"}})
    return chain

