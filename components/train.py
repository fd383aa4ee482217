"""Train: models of several families built from the schema, preprocessing inside each; one is chosen.

Normalisation, imputation and vocabularies are Keras preprocessing layers adapted on the train
split, so the exported SavedModel takes raw named features and the training and serving paths
cannot diverge. The task (binary, multiclass, regression) is read off the label. The families
(components/model_families.py): the linear model evaluate fits as its baseline, gradient-boosted
trees (components/tree_model.py) and the wide-and-deep network; each is scored on the eval split
and the selection rule exports one, with the same `serving_default` signature whichever it is.
"""

import dataclasses
import json
import os
import time

import numpy as np
from kfp import dsl

from components import engines, model_inputs, training_data
from components import model_families as families
from components import tree_model
from components.artifact_io import atomic_dir
from components.kfp_component import flywheel_component
from flywheel import artifacts, bundle, labels, names, schema_view
from flywheel.errors import DataError
from flywheel.evaluation import baselines
from flywheel.params import TrainParams
from flywheel.schema_view import Feature
from flywheel.temporal import time_encoding


@dataclasses.dataclass(frozen=True)
class TrainResult:
    model_dir: str
    task: str
    label_vocabulary: list
    history: dict
    strategy: str
    devices: list
    train_rows: int
    seconds: float
    family: str = families.WIDE_DEEP
    selection: dict = dataclasses.field(default_factory=dict)   # families.Choice.to_dict()


def choose_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG names several tasks (a TFJob's workers), a TPU
    if one is reachable, several GPUs → MirroredStrategy, else the default strategy."""
    import tensorflow as tf

    if training_data.cluster()[1] > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, tf.errors.NotFoundError, RuntimeError):
        pass  # no TPU here
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _encoded_feature(spec: Feature, raw, train: np.ndarray, params: TrainParams):
    """The preprocessing of one raw input, adapted on its train-split values."""
    from keras import layers, ops

    if spec.time:   # ISO dates or epoch seconds: trend and cycles, never a vocabulary of instants
        return [time_encoding.layer(spec, train)(raw)]
    if spec.categorical:
        lookup_cls = layers.StringLookup if spec.kind == "string" else layers.IntegerLookup
        lookup = lookup_cls(max_tokens=params.max_vocab, output_mode="one_hot", name=f"{spec.signature_key}_lookup")
        lookup.adapt(train)
        return [lookup(raw)]
    values = train.astype(np.float32)
    finite = values[np.isfinite(values)]
    mean = float(finite.mean()) if finite.size else 0.0
    as_float = ops.cast(raw, "float32")
    imputed = ops.where(ops.isnan(as_float), mean, as_float)  # serving may send NaN for a float
    norm = layers.Normalization(axis=None, name=f"{spec.signature_key}_norm")
    norm.adapt(np.where(np.isfinite(values), values, mean))
    return [layers.Reshape((1,))(norm(imputed))]


def fit_plan(train_rows: int, params: TrainParams) -> tuple[int, int]:
    """(batch size, epochs) for a split of `train_rows`: batches of about an eighth of the rows (a
    power of two, at least 16, at most params.batch_size), and epochs enough for params.min_steps
    gradient steps (at least params.epochs, at most params.max_epochs). 137 rows in batches of 256
    for 8 epochs would be 8 steps: a model that has barely moved."""
    batch = int(min(params.batch_size, max(16, 2 ** int(np.log2(max(train_rows, 8) / 8)))))
    steps_per_epoch = max(1, -(-train_rows // batch))
    epochs = int(min(params.max_epochs, max(params.epochs, -(-params.min_steps // steps_per_epoch))))
    return batch, epochs


def _encoded_inputs(specs: list[Feature], train_inputs: dict, params: TrainParams):
    """(Keras inputs keyed by signature key, the concatenated encoding of all of them)."""
    import keras
    from keras import layers

    inputs = {s.signature_key: keras.Input(shape=(), dtype=s.tf_dtype, name=s.signature_key) for s in specs}
    encoded = []
    for spec in specs:
        encoded.extend(_encoded_feature(spec, inputs[spec.signature_key], train_inputs[spec.signature_key], params))
    return inputs, layers.Concatenate()(encoded) if len(encoded) > 1 else encoded[0]


def build_linear(specs: list[Feature], x_train: dict, y_train: np.ndarray, task: str, n_classes: int,
                 params: TrainParams):
    """The serving model of evaluate's linear baseline fitted on the network's own encoding: ridge
    for regression, L2 logistic regression (one-vs-rest, then softmax) for classes, by Newton's
    method in flywheel/evaluation/baselines.py, so the fit is exact and the same on every run."""
    import keras
    from keras import layers

    inputs, wide = _encoded_inputs(specs, x_train, params)
    encoded = keras.Model(inputs, wide).predict(x_train, batch_size=model_inputs.SCORING_BATCH, verbose=0)
    design = np.hstack([np.ones((len(encoded), 1)), np.asarray(encoded, dtype=np.float64)])
    if task == names.REGRESSION:
        weights = baselines.ridge(design, y_train.astype(float))[:, None]
    elif task == names.BINARY:
        weights = baselines.logistic(design, y_train.astype(float))[:, None]
    else:
        weights = np.column_stack([baselines.logistic(design, (y_train == k).astype(float)) for k in range(n_classes)])
    head = layers.Dense(weights.shape[1], activation={names.BINARY: "sigmoid", names.MULTICLASS: "softmax"}.get(task))
    out = head(wide)
    head.set_weights([weights[1:].astype(np.float32), weights[0].astype(np.float32)])
    if task == names.MULTICLASS:
        predicted = keras.ops.cast(keras.ops.argmax(out, axis=-1), "float32")
        return keras.Model(inputs, {names.OUTPUT_SCORE: predicted, names.OUTPUT_PROBABILITIES: out})
    return keras.Model(inputs, {names.OUTPUT_SCORE: layers.Reshape(())(out)})


def build_models(specs: list[Feature], train_inputs: dict, task: str, n_classes: int, params: TrainParams):
    """(training model with one output, serving model with the dict output of names.OUTPUT_*)."""
    import keras
    from keras import layers, ops

    inputs, wide = _encoded_inputs(specs, train_inputs, params)
    hidden = wide
    for units in params.hidden_units:
        hidden = layers.Dense(units, activation="relu")(hidden)
    # Wide and deep: the encoded inputs also reach the head directly, so the model is at least a
    # linear one on them; on a few hundred rows that part carries most of the signal.
    hidden = layers.Concatenate()([wide, hidden])
    if task == names.BINARY:
        head = layers.Dense(1, activation="sigmoid")(hidden)
        score = layers.Reshape((), name=names.OUTPUT_SCORE)(head)
        return keras.Model(inputs, score), keras.Model(inputs, {names.OUTPUT_SCORE: score})
    if task == names.MULTICLASS:
        probabilities = layers.Dense(n_classes, activation="softmax", name=names.OUTPUT_PROBABILITIES)(hidden)
        predicted = ops.cast(ops.argmax(probabilities, axis=-1), "float32")
        return (keras.Model(inputs, probabilities),
                keras.Model(inputs, {names.OUTPUT_SCORE: predicted, names.OUTPUT_PROBABILITIES: probabilities}))
    value = layers.Reshape((), name=names.OUTPUT_SCORE)(layers.Dense(1)(hidden))
    return keras.Model(inputs, value), keras.Model(inputs, {names.OUTPUT_SCORE: value})


def _compile(model, task: str, learning_rate: float) -> None:
    import keras

    loss, metrics = {
        names.BINARY: ("binary_crossentropy", [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]),
        names.MULTICLASS: ("sparse_categorical_crossentropy", ["accuracy"]),
        names.REGRESSION: ("mse", [keras.metrics.RootMeanSquaredError(name="rmse")]),
    }[task]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)


class _EpochProgress:
    """One line per epoch on stdout, so a long train step shows progress in the KFP logs too."""

    def __new__(cls, epochs: int):
        import keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                shown = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
                print(f"[train] epoch {epoch + 1}/{epochs} {shown}", flush=True)

        return Callback()


# Below this many eval rows the eval loss is mostly sampling noise (on 15 rows its best epoch is
# often the first): the fixed plan of fit_plan runs to its end instead of stopping early.
MIN_EVAL_ROWS_TO_STOP_EARLY = 200


def _callbacks(epochs: int, params: TrainParams, eval_rows: int) -> list:
    """Progress, and early stopping on the eval split's loss with the best epoch's weights restored."""
    import keras

    callbacks = [_EpochProgress(epochs)]
    if eval_rows >= MIN_EVAL_ROWS_TO_STOP_EARLY and params.patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.patience,
                                                       restore_best_weights=True))
    return callbacks


def run(examples_dir: str, schema_path: str, label: str, model_dir: str, params: TrainParams = TrainParams(),
        curves_path: str | None = None, data_version: str = "", engine: str | None = None) -> TrainResult:
    """Train every family of params.families on <examples_dir>/train, score each on eval, and export
    the one the selection rule picks as a SavedModel to `model_dir`. When ingest streamed the data
    (`engine` streaming or beam), or several workers share the work, only the wide-and-deep network
    trains, its splits streaming through tf.data.

    The export is written to a temporary sibling directory and renamed into place at the end,
    so a failure leaves no partial model behind."""
    import keras
    import tensorflow as tf

    started = time.time()
    families.check(params)
    schema = schema_view.load(schema_path)
    specs = schema_view.features(schema, names.ENV_SERVING, exclude=label)
    if not specs:
        raise DataError(schema_path, f"the schema has no serving features besides the label '{label}'")
    streaming = engine in (engines.STREAMING, engines.BEAM)
    # Large data (ingest streamed it): the task, fills and preprocessing layers come from a uniform
    # sample, and the splits reach the model through tf.data; small data is held whole.
    read = (lambda split: training_data.sample(examples_dir, split, training_data.ADAPT_ROWS, params.seed)) \
        if streaming else (lambda split: model_inputs.read_split(examples_dir, split))
    train_df, eval_df = read(names.TRAIN), read(names.EVAL)
    for split, frame in ((names.TRAIN, train_df), (names.EVAL, eval_df)):
        if label not in frame:
            raise DataError(f"the {split} split in {examples_dir}",
                            f"the label column is missing (columns: {list(frame.columns)})", column=label)
    train_df, eval_df = train_df[train_df[label].notna()], eval_df[eval_df[label].notna()]
    task, vocabulary = labels.infer_task(train_df[label], label)
    eval_df = eval_df[eval_df[label].isin(vocabulary)] if vocabulary else eval_df
    fills = model_inputs.fill_values(train_df, specs)
    x_train, x_eval = model_inputs.to_inputs(train_df, specs, fills), model_inputs.to_inputs(eval_df, specs, fills)
    y_train = labels.encode(train_df[label], task, vocabulary)
    y_eval = labels.encode(eval_df[label], task, vocabulary)

    keras.utils.set_random_seed(params.seed)
    strategy = choose_strategy()
    devices = [d.name for d in tf.config.list_logical_devices() if d.device_type in ("GPU", "TPU")] or ["CPU"]
    train_rows = artifacts.split_rows(examples_dir, names.TRAIN) if streaming else len(train_df)
    batch_size, epochs = fit_plan(train_rows, params)
    distributed = streaming or training_data.cluster()[1] > 1
    print(f"[train] task={task} features={len(specs)} rows={train_rows} strategy={type(strategy).__name__} "
          f"workers={training_data.cluster()[1]} "
          f"devices={devices} data={'tf.data from Parquet shards' if streaming else 'in memory'} "
          f"families={','.join(params.families)}", flush=True)

    def fit(family: str, x: dict, y: np.ndarray, x_val: dict, y_val: np.ndarray):
        """(serving model, history) of one family fitted on (x, y); (x_val, y_val) only stop the network early."""
        if family == families.WIDE_DEEP:
            plan = fit_plan(len(y), params) if not streaming else (batch_size, epochs)
            print(f"[train] wide_deep: batch={plan[0]} epochs<={plan[1]}", flush=True)
            keras.utils.set_random_seed(params.seed)
            with strategy.scope():
                train_model, serving_model = build_models(specs, x, task, len(vocabulary), params)
                _compile(train_model, task, params.learning_rate)
            return serving_model, _fit_network(train_model, examples_dir, specs, fills, label, task, vocabulary, x, y,
                                               x_val, y_val, *plan, params, strategy, streaming)
        if family == families.LINEAR:
            return build_linear(specs, x, y, task, len(vocabulary), params), {}
        return tree_model.fit(x, y, specs, task, params.gbt_trees, params.seed, params.max_vocab), {}

    # Below kfold_below_rows train+eval rows the eval split is too few rows to choose on: every
    # family is scored out of fold on all of them instead, then the chosen one is fitted on train.
    pooled = len(y_train) + len(y_eval)
    kfold = not distributed and params.kfold > 1 and pooled < params.kfold_below_rows and len(y_eval) > 0
    if kfold:
        x_all = {k: np.concatenate([x_train[k], x_eval[k]]) for k in x_train}
        y_all = np.concatenate([y_train, y_eval])
        fold = np.random.default_rng(params.seed).permutation(pooled) % params.kfold
    trained, candidates = {}, {}
    for family in params.families:
        skipped = families.skip_reason(family, params, train_rows, time.time() - started, distributed)
        if skipped:
            candidates[family] = families.Candidate(family, status="skipped", note=skipped)
            print(f"[train] {family}: skipped ({skipped})", flush=True)
            continue
        family_started = time.time()
        if kfold:
            outputs = {}
            for k in range(params.kfold):
                inside, out = fold != k, fold == k
                model, _ = fit(family, {c: v[inside] for c, v in x_all.items()}, y_all[inside],
                               {c: v[:0] for c, v in x_all.items()}, y_all[:0])
                answers = _eval_outputs(family, model, {c: v[out] for c, v in x_all.items()}, specs, task)
                for key, value in answers.items():
                    outputs.setdefault(key, np.zeros((pooled, *value.shape[1:])))[out] = value
            candidates[family] = families.scored(family, task, y_all, outputs, (time.time() - family_started) / params.kfold)
            candidates[family].note = f"{params.kfold}-fold on {pooled} train+eval rows"
        else:
            trained[family] = fit(family, x_train, y_train, x_eval, y_eval)
            outputs = _eval_outputs(family, trained[family][0], x_eval, specs, task) if len(eval_df) else None
            candidates[family] = families.scored(family, task, y_eval, outputs, time.time() - family_started)
        print(f"[train] {family}: {candidates[family].describe()}", flush=True)
    choice = families.select(candidates, task, y_all if kfold else y_eval, params, pooled)
    print(f"[train] chosen: {choice.family} ({choice.reason})", flush=True)
    if kfold:
        trained[choice.family] = fit(choice.family, x_train, y_train, x_eval, y_eval)
    chosen, history = trained[choice.family]
    if not _is_chief():   # every worker trains; the chief alone exports (TF_CONFIG's first task)
        return TrainResult(model_dir, task, [_jsonable(v) for v in vocabulary], history, type(strategy).__name__,
                           devices, train_rows, time.time() - started, choice.family, choice.to_dict())

    with atomic_dir(model_dir) as staging:  # no partial model, ever
        if choice.family == families.GBT:
            tree_model.export(chosen, specs, task, str(staging))
        else:
            chosen.export(str(staging), verbose=False)
        bundle.write_metadata(str(staging), {
            "label": label, "task": task, "label_vocabulary": [_jsonable(v) for v in vocabulary],
            "features": {s.name: s.kind for s in specs}, "categorical": [s.name for s in specs if s.categorical],
            "time_formats": {s.name: s.time_format for s in specs if s.time},
            "family": choice.family, "selection": choice.to_dict(),
            **({"fit": {"batch_size": batch_size, "max_epochs": epochs,
                        "epochs_run": len(next(iter(history.values()), []))}} if history else {}),
            "signature_keys": {s.name: s.signature_key for s in specs},
            "fill_values": {k: _jsonable(v) for k, v in fills.items()}, "data_version": data_version,
            "history": history, "hyperparameters": dataclasses.asdict(params),
        })
    if curves_path:
        write_curves_html(history, task, curves_path)
    return TrainResult(model_dir, task, [_jsonable(v) for v in vocabulary], history, type(strategy).__name__,
                       devices, train_rows, time.time() - started, choice.family, choice.to_dict())


def _fit_network(train_model, examples_dir, specs, fills, label, task, vocabulary, x_train, y_train, x_eval, y_eval,
                 batch_size, epochs, params, strategy, streaming) -> dict:
    """Fit the wide-and-deep network; its history (metric -> one value per epoch)."""
    if training_data.cluster()[1] > 1:
        _build_before_multiworker_fit(train_model, strategy, x_train, y_train, batch_size)
    if streaming:
        inputs = _streamed_inputs(examples_dir, specs, fills, label, task, vocabulary, x_train, y_train, batch_size,
                                  params)
        history = train_model.fit(inputs["train"], validation_data=inputs["eval"], epochs=epochs,
                                  steps_per_epoch=inputs["steps"], validation_steps=inputs["eval_steps"],
                                  verbose=0, callbacks=_callbacks(epochs, params, artifacts.split_rows(examples_dir, names.EVAL)))
    else:
        history = train_model.fit(
            x_train, y_train, validation_data=(x_eval, y_eval) if len(y_eval) else None,
            epochs=epochs, batch_size=batch_size, verbose=0, callbacks=_callbacks(epochs, params, len(y_eval)))
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}


def _eval_outputs(family: str, model, x_eval: dict, specs: list[Feature], task: str) -> dict:
    """A candidate's answers on the eval split, in names.OUTPUT_* form."""
    if family == families.GBT:
        return tree_model.predict(model, x_eval, specs, task)
    answers = model.predict(x_eval, batch_size=model_inputs.SCORING_BATCH, verbose=0)
    return {k: np.asarray(v, dtype=np.float64) for k, v in answers.items()}


def _build_before_multiworker_fit(model, strategy, x_sample: dict, y_sample: np.ndarray, batch_size: int) -> None:
    """Two Keras 3.6 gaps under MultiWorkerMirroredStrategy. It builds a model's metrics on the first
    distributed batch by averaging the batch across replicas, which fails on string inputs: build
    them here from a local batch of the sample, and skip that step. It averages the logs (scalars)
    along axis 0 across workers, which fails on scalars: average them whole."""
    import tensorflow as tf
    n = min(batch_size, len(y_sample))
    batch = ({k: tf.constant(v[:n]) for k, v in x_sample.items()}, tf.constant(y_sample[:n]))
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    _scalar_logs_reduce_across_workers()


def _scalar_logs_reduce_across_workers() -> None:
    """Keras 3.6's train step reduces every log with reduction "mean" along axis 0, which a
    scalar across workers does not have: scalars are averaged whole (axis None) instead."""
    from keras.src.backend.tensorflow import trainer as tf_trainer
    original = tf_trainer.reduce_per_replica
    if getattr(original, "flywheel_scalars", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        import tensorflow as tf
        from keras.src import tree

        def one(v):
            if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy) \
                    and _is_scalar_per_replica(v):
                return strategy.reduce("MEAN", v, axis=None)
            return original(v, strategy, reduction)
        return tree.map_structure(one, values) if not isinstance(values, tf.Tensor) else one(values)

    reduce_per_replica.flywheel_scalars = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def _is_scalar_per_replica(v) -> bool:
    import tensorflow as tf
    if isinstance(v, tf.distribute.DistributedValues):
        v = v.values[0]
    return hasattr(v, "shape") and v.shape.rank == 0


def _is_chief() -> bool:
    return training_data.cluster()[0] == 0


def _streamed_inputs(examples_dir: str, specs: list[Feature], fills: dict, label: str, task: str, vocabulary: list,
                     x_sample: dict, y_sample: np.ndarray, batch_size: int, params: TrainParams) -> dict:
    """tf.data pipelines of the train and eval splits (components/training_data.py), with as many steps
    per epoch on every worker (each worker repeats its share, so none runs dry first)."""
    import tensorflow as tf

    def convert(frame):
        frame = frame[frame[label].notna()]
        if vocabulary:
            frame = frame[frame[label].isin(vocabulary)]
        return model_inputs.to_inputs(frame, specs, fills), labels.encode(frame[label], task, vocabulary)

    signature = ({key: tf.TensorSpec((None,), tf.string if values.dtype == object else tf.as_dtype(values.dtype))
                  for key, values in x_sample.items()}, tf.TensorSpec((None,), tf.as_dtype(y_sample.dtype)))
    train_rows = artifacts.split_rows(examples_dir, names.TRAIN)
    eval_rows = artifacts.split_rows(examples_dir, names.EVAL)
    return {
        "train": training_data.dataset(examples_dir, names.TRAIN, convert, signature, batch_size, shuffle=True,
                                       seed=params.seed, repeat=True),
        "eval": training_data.dataset(examples_dir, names.EVAL, convert, signature, batch_size, shuffle=False,
                                      repeat=True),
        "steps": max(1, train_rows // batch_size), "eval_steps": max(1, eval_rows // batch_size),
    }


def _jsonable(value):
    return value.item() if isinstance(value, np.generic) else value


def write_curves_html(history: dict, task: str, path: str) -> None:
    """Training curves as a PNG embedded in a one-file HTML page (the KFP UI renders HTML artifacts)."""
    import base64
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:   # the linear model and the trees have no epochs
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write("<!doctype html><meta charset='utf-8'><title>Training curves</title>"
                    "<p>The chosen model has no epochs to draw (a linear model or trees).</p>")
        return
    metrics = [m for m in history if not m.startswith("val_")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        epochs = range(1, len(history[metric]) + 1)
        axis.plot(epochs, history[metric], marker="o", label="train")
        if f"val_{metric}" in history:
            axis.plot(epochs, history[f"val_{metric}"], marker="o", label="eval")
        axis.set_title(metric)
        axis.set_xlabel("epoch")
        axis.legend()
        axis.grid(alpha=0.3)
    fig.suptitle(f"Training curves ({task})")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    png = buffer.getvalue()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("<!doctype html><meta charset='utf-8'><title>Training curves</title>"
                f"<img alt='training curves' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                f"<pre>{json.dumps(history, indent=1)}</pre>")
    with open(os.path.splitext(path)[0] + ".png", "wb") as f:
        f.write(png)


@flywheel_component
def train_component(examples: dsl.Input[dsl.Dataset], schema: dsl.Input[dsl.Artifact], params: dict,
                    model: dsl.Output[dsl.Model], curves: dsl.Output[dsl.HTML]):
    """The chosen model (linear, trees or network) of the label that came with the examples, with params.yaml's `train` section."""
    from components.kfp_component import set_metadata
    from components.train import run
    from flywheel import artifacts
    from flywheel import params as flywheel_params

    settings = flywheel_params.build(flywheel_params.TrainParams, params, "train")
    result = run(examples.path, str(artifacts.schema_file(schema.path)), examples.metadata["label"], model.path,
                 settings, curves_path=curves.path, data_version=examples.metadata.get("data_version", ""),
                 engine=examples.metadata.get("engine"))
    model.metadata["params"] = flywheel_params.section_dict(settings)
    set_metadata(model, {"task": result.task, "strategy": result.strategy, "devices": result.devices,
                         "train_rows": result.train_rows, "seconds": round(result.seconds, 1),
                         "family": result.family, "selection": result.selection})
