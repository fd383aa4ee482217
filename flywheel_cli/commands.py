"""The `flywheel` subcommands: each names the module whose `main(argv)` does the work.

The modules are imported only when their command runs (TensorFlow and KFP take seconds to load),
and each keeps its own `python -m` entry point: container images, KFP components and DVC stages
start them by module name.
"""
from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    help: str
    module: str
    prefix: tuple[str, ...] = ()   # leading arguments the module's parser expects (its own subcommand)

    def run(self, argv: list[str]) -> int:
        return importlib.import_module(self.module).main([*self.prefix, *argv]) or 0


COMMANDS = {c.name: c for c in (
    Command("run", "run the pipeline here: on --data FILE --label COL, else the first span then a later one",
            "pipelines.cli", ("run",)),
    Command("validate", "validate a file with TFDV and print the anomaly report", "pipelines.validate_cli"),
    Command("schema-update", "propose (and with --accept write) the curated schema's changes for new data",
            "pipelines.schema_update"),
    Command("serve", "serve the model on loopback: development model server and monitoring sidecar",
            "flywheel_cli.serve"),
    Command("live-report", "the sidecar's live drift window as one HTML page", "pipelines.live_report"),
    Command("batch", "offline predictions of a file, folder or DVC path", "pipelines.batch_cli"),
    Command("span", "the next span from the serving logs (predictions joined with feedback)",
            "pipelines.span_from_logs"),
    Command("labels", "export unlabeled predictions for raters, or import their labels (export|import)",
            "pipelines.labels_io"),
    Command("trigger", "the retraining trigger (Alertmanager webhook)", "trigger.__main__"),
    Command("loop", "the whole flywheel on loopback: serve, drift, alert, retrain", "pipelines.loop"),
    Command("lineage", "where a version came from, back through the versions it replaced", "pipelines.lineage"),
    Command("rollback", "make an earlier version production again", "pipelines.cli", ("rollback",)),
    Command("compile", "compile the training or batch pipeline to KFP YAML", "pipelines.cli", ("compile",)),
    Command("submit", "submit one run to Kubeflow Pipelines", "pipelines.cli", ("submit",)),
    Command("schedule", "create a recurring run on Kubeflow Pipelines", "pipelines.cli", ("schedule",)),
    Command("monitoring-config", "render the alert rules and dashboards from params.yaml", "monitoring.rendering"),
)}
