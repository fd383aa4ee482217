"""Columns that look wrong for what they hold, judged from their TFDV statistics.

- numbers stored as text: a string column whose values are mostly numbers, possibly with a constant
  unit before or after ("12.8C", "$4.50", "85 %"): read as text, it becomes a vocabulary of
  thousands of values instead of a number.
- near-unique strings: ids, names, free text; as a one-hot feature they memorise rows and never
  generalise, so an inferred schema keeps them out of the model (lifecycle_stage DEBUG_ONLY).

The sample is the feature's rank histogram (TFDV keeps up to 1,000 most frequent values), so the
checks cost nothing beyond the statistics already computed.
"""
from __future__ import annotations

import dataclasses
import re

from tensorflow_metadata.proto.v0 import statistics_pb2

# A number with at most a short non-digit prefix and suffix around it.
_NUMBER = re.compile(r"^\s*(?P<prefix>[^\d\s.+-]{0,3})\s*(?P<number>[+-]?(?:\d+[.,]?\d*|[.,]\d+)(?:[eE][+-]?\d+)?)"
                     r"\s*(?P<suffix>[^\d\s]{0,4})\s*$")
MOSTLY = 0.95                 # share of sampled values that must fit the pattern
MIN_DISTINCT = 20             # fewer distinct values than this is a category, whatever they look like
NEAR_UNIQUE = 0.9             # distinct values / rows at or above this is an id-like column


@dataclasses.dataclass(frozen=True)
class Finding:
    feature: str
    pattern: str                # numbers_as_text | near_unique
    description: str


def _sample(stats: statistics_pb2.FeatureNameStatistics) -> list[tuple[str, float]]:
    string_stats = stats.string_stats
    if string_stats.rank_histogram.buckets:
        return [(b.label, b.sample_count) for b in string_stats.rank_histogram.buckets]
    return [(v.value, v.frequency) for v in string_stats.top_values]


def _text(stats: statistics_pb2.FeatureNameStatistics) -> bool:
    """A column of strings (integer categories carry string statistics too, but are numbers)."""
    return stats.type == statistics_pb2.FeatureNameStatistics.STRING and stats.HasField("string_stats")


def numbers_as_text(name: str, stats: statistics_pb2.FeatureNameStatistics) -> Finding | None:
    if not _text(stats) or stats.string_stats.unique < MIN_DISTINCT:
        return None
    sample = _sample(stats)
    total = sum(count for _, count in sample)
    matches = [(_NUMBER.match(value), count) for value, count in sample]
    fitting = sum(count for m, count in matches if m)
    if not total or fitting < MOSTLY * total:
        return None
    affixes = {(m["prefix"], m["suffix"]) for m, _ in matches if m}
    example = next(value for (value, _), (m, _) in zip(sample, matches) if m)
    if len(affixes) == 1:
        prefix, suffix = next(iter(affixes))
        unit = (f"the prefix '{prefix}'" if prefix else "") + (" and " if prefix and suffix else "") + \
               (f"the suffix '{suffix}'" if suffix else "")
        how = f"numbers with {unit}" if unit else "numbers"
    else:
        how = "numbers with varying units"
    return Finding(name, "numbers_as_text",
                   f"{fitting / total:.0%} of the values are {how} (e.g. '{example}') but the column is read as text, "
                   "so the model sees a vocabulary, not a number: strip the unit and write numbers")


def near_unique(name: str, stats: statistics_pb2.FeatureNameStatistics, rows: int) -> Finding | None:
    if not _text(stats):
        return None
    unique = stats.string_stats.unique
    present = stats.string_stats.common_stats.num_non_missing or rows
    if unique < MIN_DISTINCT or unique < NEAR_UNIQUE * present:
        return None
    return Finding(name, "near_unique",
                   f"{unique} distinct values in {present} rows: an id, a name or free text; it is left out of the "
                   "model's features (it cannot generalise to new rows)")


def findings(stats: statistics_pb2.DatasetFeatureStatisticsList, skip: frozenset[str] = frozenset()) -> list[Finding]:
    """Every suspicious column of a split's statistics, except those in `skip` (the label, time)."""
    if not stats.datasets:
        return []
    dataset = stats.datasets[0]
    out = []
    for feature in dataset.features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if name in skip:
            continue
        found = numbers_as_text(name, feature) or near_unique(name, feature, int(dataset.num_examples))
        if found:
            out.append(found)
    return out
