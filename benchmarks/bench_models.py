"""The trained model on small tables against scikit-learn's logistic (or ridge) regression and random
forest fitted on the same train split, and against evaluate's own baselines.

    .venv/bin/python benchmarks/bench_models.py [--rows 150,500,1500] [--repeats 3]
    make bench-models

Tables: generated with a numeric column with missing values and a unit in its name ("temp/°C"),
a six-level category, a count, an ISO date over two years whose season carries signal, and one
interaction only trees see directly; the label binary (as "yes"/"no"), four classes, or a number.
Each table runs through the pipeline's own ingest, statistics, schema and train steps; every model
is scored on 5,000 further rows of the same distribution, so the comparison is not lost in the
noise of a 15-row test split. Figures: the primary metric of each, and the candidate's gap to the
better of the two references (AUC and accuracy in points; RMSE in percent of the better one;
negative = the candidate is better). Goal: within 3 points.
"""
import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"   # TensorFlow's CUDA registration noise stays off the figures

from components import train  # noqa: E402
from flywheel import baselines, bundle, labels, model_inputs, names  # noqa: E402
from flywheel import evaluation_metrics as em  # noqa: E402
from tests.support.frames import workspace  # noqa: E402

TEST_ROWS = 5000


def table(rows: int, task: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day = np.datetime64("2024-01-01") + rng.integers(0, 730, rows)
    season = np.sin(2 * np.pi * (day - day.astype("datetime64[Y]")).astype(int) / 365.25)
    temp = rng.normal(15, 8, rows)
    area = rng.choice(list("ABCDEF"), rows)
    visits = rng.poisson(3, rows)
    signal = (0.08 * (temp - 15) + pd.Series(area).map(dict(zip("ABCDEF", [0.9, 0.3, 0, -0.3, -0.6, 0.6]))).to_numpy()
              + 1.0 * season + 0.8 * ((visits > 4) & (area == "A")) - 0.2)
    frame = pd.DataFrame({"temp/°C": np.where(rng.random(rows) < 0.05, np.nan, temp.round(1)), "area": area,
                          "visits": visits, "day": day.astype(str)})
    noisy = signal + rng.logistic(0, 0.6, rows)
    if task == names.BINARY:
        frame["label"] = np.where(noisy > 0, "yes", "no")
    elif task == names.MULTICLASS:
        frame["label"] = np.digitize(noisy, [-1.0, 0.0, 1.0])
        frame["label"] = frame["label"].map({0: "cold", 1: "cool", 2: "warm", 3: "hot"})
    else:
        frame["label"] = (10 * signal + rng.normal(0, 4, rows)).round(2)
    return frame


def references(task: str, x_train, y_train, x_test, seed: int) -> dict:
    if task == names.REGRESSION:
        models = {"linear (sklearn)": Ridge(), "forest (sklearn)": RandomForestRegressor(300, random_state=seed)}
    else:
        models = {"linear (sklearn)": LogisticRegression(max_iter=2000),
                  "forest (sklearn)": RandomForestClassifier(300, random_state=seed, min_samples_leaf=2)}
    outputs = {}
    for name, model in models.items():
        model.fit(x_train, y_train)
        if task == names.REGRESSION:
            outputs[name] = {names.OUTPUT_SCORE: model.predict(x_test)}
        else:
            probabilities = np.zeros((len(x_test), int(y_train.max()) + 1))
            probabilities[:, model.classes_.astype(int)] = model.predict_proba(x_test)
            outputs[name] = ({names.OUTPUT_SCORE: probabilities[:, 1]} if task == names.BINARY
                             else {names.OUTPUT_PROBABILITIES: probabilities})
    return outputs


def gap(metric: str, candidate: float, best: float) -> float:
    if metric == "rmse":
        return 100 * (candidate - best) / best
    return 100 * (best - candidate)


def one(rows: int, task: str, seed: int, root: Path, settings: dict) -> dict:
    frame, test = table(rows, task, seed), table(TEST_ROWS, task, seed + 1000)
    space = workspace(root, frame, **settings)
    model_dir = str(root / "model")
    with contextlib.redirect_stdout(io.StringIO()):
        result = train.run(space["examples"], space["schema"], "label", model_dir, space["params"].train)
    metadata = bundle.read_metadata(model_dir)
    train_split = model_inputs.read_split(space["examples"], names.TRAIN)
    train_split = train_split[train_split["label"].notna()]
    y_train = labels.encode(train_split["label"], result.task, metadata["label_vocabulary"])
    y_test = labels.encode(test["label"], result.task, metadata["label_vocabulary"])
    features = model_inputs.model_features(metadata)
    encoder = baselines._Encoder(train_split, features)
    metric = em.primary_metric(result.task)
    outputs, _ = model_inputs.predict(model_dir, test)
    scores = {"candidate": em.task_metrics(result.task, y_test, outputs)[metric]}
    for name, out in references(result.task, encoder(train_split), y_train, encoder(test), seed).items():
        scores[name] = em.task_metrics(result.task, y_test, out)[metric] if metric != "accuracy" else \
            float(np.mean(out[names.OUTPUT_PROBABILITIES].argmax(axis=1) == y_test))
    own = baselines.assess(train_split, test, metadata, features)
    scores.update({f"{k} (evaluate)": v for k, v in own.values.items()})
    better = min if metric == "rmse" else max
    best = better(scores["linear (sklearn)"], scores["forest (sklearn)"])
    return {"metric": metric, "scores": scores, "gap": gap(metric, scores["candidate"], best),
            "epochs": metadata["fit"]["epochs_run"], "batch": metadata["fit"]["batch_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="150,500,1500")
    parser.add_argument("--tasks", default=f"{names.BINARY},{names.MULTICLASS},{names.REGRESSION}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", default="", help='params to override, e.g. "train.patience=0 train.min_steps=500"')
    args = parser.parse_args()
    settings = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set.split())}
    print(f"{'task':<11}{'rows':>6} {'metric':<9}{'candidate':>10}{'linear':>9}{'forest':>9}{'trivial':>9}"
          f"{'gap':>8}{'epochs':>8}{'batch':>6}{'s':>6}")
    for task in args.tasks.split(","):
        for rows in (int(r) for r in args.rows.split(",")):
            runs = []
            for repeat in range(args.repeats):
                started = time.time()
                with tempfile.TemporaryDirectory() as tmp:
                    runs.append(one(rows, task, 11 + repeat, Path(tmp), settings))
                runs[-1]["seconds"] = time.time() - started

            def mean(key):
                return float(np.mean([r["scores"][key] for r in runs]))
            trivial = next(k for k in runs[0]["scores"] if k.startswith(("majority", "mean")))
            print(f"{task:<11}{rows:>6} {runs[0]['metric']:<9}{mean('candidate'):>10.3f}{mean('linear (sklearn)'):>9.3f}"
                  f"{mean('forest (sklearn)'):>9.3f}{mean(trivial):>9.3f}{np.mean([r['gap'] for r in runs]):>+8.1f}"
                  f"{np.mean([r['epochs'] for r in runs]):>8.0f}{runs[0]['batch']:>6}"
                  f"{np.mean([r['seconds'] for r in runs]):>6.0f}", flush=True)
    print("gap: candidate vs the better of sklearn's linear model and random forest, on 5,000 unseen rows "
          "(points of AUC or accuracy; % of RMSE); mean over repeats")


if __name__ == "__main__":
    main()
