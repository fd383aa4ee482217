"""Gradient-boosted trees (TensorFlow Decision Forests) as a servable SavedModel.

Trained with YDF, the library TF-DF 1.9 is built on (it reads the pandas frame directly, so no
tf.data pass), and exported through TF-DF's inference ops inside a module whose `serving_default`
takes the same raw named features as the Keras models and answers the same names.OUTPUT_* dict.
Trees need no scaling or one-hot: strings stay categories, a missing float stays NaN (trees route
it), and a time column becomes its parts (flywheel/temporal/time_encoding.py in the model, flywheel/temporal/timeparts.py
for the train rows; the tests hold the two equal).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from flywheel import names
from flywheel.schema_view import STRING, Feature
from flywheel.temporal import timeparts

# The parts of a time column the trees see: trend (fractional year), day of the year, weekday, hour.
TIME_PARTS = (timeparts.TREND, timeparts.DAY_OF_YEAR, timeparts.WEEKDAY, timeparts.HOUR)
# A fixed thread count, so nothing about the fit depends on the machine's core count (the
# reproducibility test holds metrics to 1e-6); the cost is idle cores on bigger machines.
THREADS = 2


def _part_name(spec: Feature, part: str) -> str:
    return f"{spec.signature_key}__{part}"


def tree_frame(inputs: dict[str, np.ndarray], specs: list[Feature]) -> pd.DataFrame:
    """The columns the trees train on, from model_inputs.to_inputs' arrays (keyed by signature key)."""
    columns = {}
    for spec in specs:
        values = inputs[spec.signature_key]
        if spec.time:
            p = timeparts.parts(timeparts.parse(values).seconds, spec.time_of_day)   # NaN where missing
            for part in TIME_PARTS:
                if part in p:
                    columns[_part_name(spec, part)] = p[part].astype(np.float32)
        elif spec.kind == STRING:
            columns[spec.signature_key] = values.astype(str)
        else:
            columns[spec.signature_key] = values.astype(np.float32)
    return pd.DataFrame(columns)


def fit(x_train: dict, y_train: np.ndarray, specs: list[Feature], task: str, trees: int, seed: int, max_vocab: int):
    """A YDF gradient-boosted trees model of y_train (labels.encode's codes or values). A string
    column keeps its `max_vocab` most frequent values, the rest are one "other" value: with YDF's
    own cap (2,000), flights' tail numbers (4,043 values) made a fit on 10,000 of its rows take 23
    times the CPU seconds, for a worse score."""
    import ydf

    frame = tree_frame(x_train, specs)
    label = "__label__"
    while label in frame:
        label += "_"
    frame[label] = y_train if task == names.REGRESSION else y_train.astype(np.int64)
    learner = ydf.GradientBoostedTreesLearner(
        label=label, task=ydf.Task.REGRESSION if task == names.REGRESSION else ydf.Task.CLASSIFICATION,
        num_trees=trees, random_seed=seed, num_threads=THREADS, max_vocab_count=max_vocab)
    return learner.train(frame, verbose=0)


def _time_columns(spec: Feature, raw):
    """The TIME_PARTS of a raw time column, in TensorFlow ops (NaN where missing or unparsable)."""
    import tensorflow as tf

    from flywheel.temporal import time_encoding

    seconds, valid = time_encoding.seconds_and_valid(raw, spec.kind == STRING)
    p = time_encoding.parts(tf.where(valid, seconds, tf.zeros_like(seconds)))
    nan = tf.constant(np.nan, tf.float32)
    return {_part_name(spec, part): tf.where(valid, tf.cast(p[part], tf.float32), nan)
            for part in TIME_PARTS if part != timeparts.HOUR or spec.time_of_day}


def export(model, specs: list[Feature], task: str, path: str) -> None:
    """Write a SavedModel of `model` to `path` whose serving_default takes the raw features."""
    import tensorflow as tf
    import tensorflow_decision_forests  # noqa: F401  (registers the inference ops the module calls)

    class Servable(tf.Module):
        pass

    module = Servable()
    module.trees = model.to_tensorflow_function(squeeze_binary_classification=False)
    # YDF orders classes by its own dictionary ("0", "1", ...): put column k at class code k.
    order = [int(c) for c in model.label_classes()] if task != names.REGRESSION else []
    permutation = np.argsort(order).tolist() if order else []
    signature = [tf.TensorSpec([None], spec.tf_dtype, name=spec.signature_key) for spec in specs]

    @tf.function(input_signature=signature)
    def serve(*raw):
        features = {}
        for spec, column in zip(specs, raw):
            if spec.time:
                features.update(_time_columns(spec, column))
            elif spec.kind == STRING:
                features[spec.signature_key] = column
            else:
                features[spec.signature_key] = tf.cast(column, tf.float32)
        answer = module.trees(features)
        if task == names.REGRESSION:
            return {names.OUTPUT_SCORE: tf.reshape(answer, [-1])}
        probabilities = tf.gather(tf.reshape(answer, [-1, len(order)]), permutation, axis=1)
        if task == names.BINARY:
            return {names.OUTPUT_SCORE: probabilities[:, 1]}
        return {names.OUTPUT_SCORE: tf.cast(tf.argmax(probabilities, axis=1), tf.float32),
                names.OUTPUT_PROBABILITIES: probabilities}

    module.serve = serve
    tf.saved_model.save(module, path, signatures={names.SIGNATURE: serve.get_concrete_function()})


def predict(model, x: dict, specs: list[Feature], task: str) -> dict:
    """The trees' answers on x in names.OUTPUT_* form (the eval split's scores for selection)."""
    answer = np.asarray(model.predict(tree_frame(x, specs)))
    if task == names.REGRESSION:
        return {names.OUTPUT_SCORE: answer.reshape(-1).astype(np.float64)}
    order = [int(c) for c in model.label_classes()]
    if task == names.BINARY:
        positive = answer.reshape(-1)   # YDF answers the second class's probability
        return {names.OUTPUT_SCORE: positive if order[1] == 1 else 1 - positive}
    probabilities = answer.reshape(len(answer), -1)[:, np.argsort(order)]
    return {names.OUTPUT_SCORE: probabilities.argmax(axis=1).astype(float), names.OUTPUT_PROBABILITIES: probabilities}
