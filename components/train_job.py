"""The train step as a Kubeflow Training Operator TFJob's workers run it (manifests/training/).

    python -m components.train_job --examples DIR --schema FILE --label COLUMN --model-dir DIR
        [--params '{"epochs": 8, ...}'] [--engine streaming]

The operator gives every replica TF_CONFIG naming all of them; components/train.py then trains
with MultiWorkerMirroredStrategy, each worker reading its own row groups of the Parquet shards
(components/training_data.py), and the chief (the first task) exports the model to --model-dir,
which the workers share (an object-store path on a cluster). Exit status 0 on success; a
DataError (bad input) exits 1 with its message, as the KFP components do.
"""
from __future__ import annotations

import argparse
import json
import sys


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", required=True, help="the examples artifact (Parquet shards per split)")
    parser.add_argument("--schema", required=True, help="schema.pbtxt, or the schema artifact directory")
    parser.add_argument("--label", required=True)
    parser.add_argument("--model-dir", required=True, help="where the chief exports the SavedModel")
    parser.add_argument("--params", default="{}", help="params.yaml's train section as JSON (defaults otherwise)")
    parser.add_argument("--engine", default="streaming", help="in_memory holds the splits whole; else tf.data")
    return parser


def main(argv: list[str] | None = None) -> int:
    from components import train
    from flywheel import artifacts
    from flywheel import params as flywheel_params
    from flywheel.errors import DataError

    args = parser().parse_args(argv)
    settings = flywheel_params.build(flywheel_params.TrainParams, json.loads(args.params), "train")
    try:
        result = train.run(args.examples, str(artifacts.schema_input(args.schema)), args.label, args.model_dir,
                           settings, engine=args.engine)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"task": result.task, "family": result.family, "strategy": result.strategy, "train_rows": result.train_rows,
                      "history": result.history, "seconds": round(result.seconds, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
