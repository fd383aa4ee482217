"""Safe releases, measured: infra validation's cost and latency figures, and how far the
confidence-based performance estimate (CBPE) is from the accuracy realised once labels are known.

A model is trained and evaluated by the pipeline's own steps on the default data's span 1; then
- infra validation (components/infra_validate.py, development model server) at each rate: the
  whole step's time, the model server's start and load time, p50/p99 of one-row requests;
- CBPE on span 2 generated without shift, with the generator's covariate shift (span 3's:
  longer trips, more cash) and with a concept shift (the payment term of the label function
  reversed): estimated vs realised accuracy, and ROC AUC.

    python benchmarks/bench_releases.py [--rates 50 200] [--requests 500]   (~2 min)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components import evaluate, infra_validate, model_inputs  # noqa: E402
from flywheel import bundle, labels, names, params  # noqa: E402
from flywheel.evaluation import evaluation_metrics as em  # noqa: E402
from flywheel.evaluation import performance_estimation as pe  # noqa: E402
from flywheel.params import DataParams, InfraValidateParams, Shift  # noqa: E402
from tools import datagen  # noqa: E402
from pipelines import chain  # noqa: E402

SHIFTS = {"none": (), "covariate": (Shift(2, "covariate", "trip_miles", 0.5), Shift(2, "covariate", "payment_type", 0.2)),
          "concept": (Shift(2, "concept", "payment_type", -1.0),)}


def span_file(root: Path, n: int, shifts=(), rows: int = 5000) -> str:
    path = root / f"span-{n:03d}-{len(shifts)}-{abs(hash(shifts)) % 1000}.csv"
    datagen.generate_span(DataParams(rows_per_span=rows, shifts=shifts), n).to_csv(path, index=False)
    return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 200.0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        settings = params.override(params.load(), {"push.model_repository": str(root / "repo")})
        run = chain.run(span_file(root, 1), root / "run", settings, until="evaluate")
        print("\nInfra validation (development model server, one-row requests, open loop)")
        print(f"{'rate/s':>7} {'requests':>8} {'step s':>7} {'load s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max diff':>9}")
        for rate in args.rates:
            figures = infra_validate.run(str(run.examples), str(run.model), str(run.evaluation),
                                         str(root / f"infra-{rate:.0f}"),
                                         InfraValidateParams(latency_requests=args.requests, rate_rps=rate,
                                                             max_p99_ms=1e9), names.DEFAULT_MODEL_NAME)
            latency = figures["latency"]
            print(f"{rate:>7.0f} {latency['requests']:>8} {figures['seconds']:>7.1f} {figures['load_seconds']:>7.1f} "
                  f"{latency['p50_ms']:>7.2f} {latency['p99_ms']:>7.2f} {figures['max_abs_difference']:>9.1e}")

        metadata = bundle.read_metadata(str(run.model))
        estimation = run.results["evaluate"].performance_estimation
        calibration = pe.Calibration.from_dict(estimation["calibration"])
        check = estimation["check"]
        print(f"\nCBPE: calibration fitted on the eval split ({estimation['fitted_rows']} rows); on the test split "
              f"calibration error {check['raw_calibration_error']:.3f} raw, {check['calibration_error']:.3f} calibrated")
        print(f"{'span 2':<10} {'rows':>5} {'est acc':>8} {'real acc':>8} {'error':>7} {'est auc':>8} {'real auc':>8}")
        for kind, shifts in SHIFTS.items():
            current = chain.run(span_file(root, 2, shifts), root / f"current-{kind}", settings, until="ingest")
            frame = evaluate.scored_rows(str(current.examples), names.TRAIN, metadata)
            outputs, _ = model_inputs.predict(str(run.model), frame)
            truth = labels.encode(frame[metadata["label"]], metadata["task"], metadata.get("label_vocabulary", []))
            score = outputs[names.OUTPUT_SCORE]
            estimate = pe.estimate_binary(score, calibration)
            realised = float(np.mean((score >= 0.5) == truth))
            print(f"{kind:<10} {len(frame):>5} {estimate.accuracy:>8.4f} {realised:>8.4f} "
                  f"{estimate.accuracy - realised:>+7.4f} {estimate.roc_auc:>8.4f} {em.auc(truth, score):>8.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
