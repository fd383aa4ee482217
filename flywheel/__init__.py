"""What every part of Flywheel shares, in floors.

The contract, the modules directly in this package: names, typed settings and the options that
set them, TF Serving's protocol and an HTTP client, metric names, storage, the layouts of the
model repository, bundles and logs, the reading of a schema, labels, redaction. It imports no
domain package (tests/architecture/test_layers.py lists its one exception).

The domain packages stand on it: `drift` (the drift rule), `temporal` (time columns),
`evaluation` (metrics, baselines, fairness), `report` (HTML reports and cards). What only the
pipeline steps use lives in components/.
"""
