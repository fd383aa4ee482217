"""Drift and skew decisions that hold at any sample size, in plain numpy.

The pipeline (validate) and the monitoring sidecar use the same code, so their numbers agree:
- `profiles_from_statistics(stats)`: reference profiles from TFDV statistics (computed with
  `tfdv.StatsOptions(num_quantiles_histogram_buckets=params.drift.quantiles)`);
  `profiles_from_values(columns, quantiles)`: the same from raw values, exactly.
- `profile.to_dict()` / `profile_from_dict(d)`: the JSON the statistics step writes (profiles.json)
  and every pushed version carries (baseline_profiles.json).
- `profile.summarize(values)`: current values in the profile's bins; summaries add up (`a + b`).
- `compare(profiles, summaries, params.drift)`: one `FeatureDrift` per feature, with the test,
  p-values, effect size, threshold, sample sizes, the decision and a one-line reason.
- `flywheel.drift.joint`: how features move together (pairwise correlations), for the changes no
  per-feature test sees: `joint_profile`, `JointProfile.summarize`, `compare_joint`.
"""
from flywheel.drift.compare import (CHI2, KS, KS_CHI2, LINF, NONE, WASSERSTEIN_SD, FeatureDrift, chi2_two_sample,
                                    compare, decile_groups, format_table, pool_levels, psi,
                                    wasserstein)
from flywheel.drift.profiles import (CATEGORICAL, NUMERIC, CategoricalProfile, CategoricalSummary, NumericProfile,
                                     NumericSummary, Profile, Summary, categorical_profile,
                                     categorical_profile_from_counts, category_counts, numeric_profile,
                                     numeric_profile_from_histogram, profile_from_dict, profile_from_feature_stats,
                                     profile_from_values, profiles_from_statistics, profiles_from_values,
                                     summarize)
from flywheel.drift.pvalues import chi2_sf, gamma_q, holm, kolmogorov_sf, ks_pvalue

__all__ = [
    "CATEGORICAL", "CHI2", "KS", "KS_CHI2", "LINF", "NONE", "NUMERIC", "WASSERSTEIN_SD",
    "CategoricalProfile", "CategoricalSummary", "FeatureDrift", "NumericProfile", "NumericSummary", "Profile",
    "Summary", "categorical_profile", "categorical_profile_from_counts", "category_counts", "chi2_sf",
    "chi2_two_sample", "compare", "decile_groups", "format_table", "gamma_q", "holm", "kolmogorov_sf", "ks_pvalue",
    "numeric_profile", "numeric_profile_from_histogram", "pool_levels", "profile_from_dict", "profile_from_feature_stats",
    "profile_from_values", "profiles_from_statistics", "profiles_from_values", "psi", "summarize",
    "wasserstein",
]
