"""A quiet console for the command-line tools: what a person reads, not what libraries print.

TensorFlow's C++ start-up lines (CUDA plugin registration, oneDNN notices) and third-party
deprecation warnings say nothing about the run; they stay out unless `verbose`. Set before
TensorFlow is first imported, and inherited by the processes the tools start (kfp.local tasks).
"""
from __future__ import annotations

import os
import warnings


def quiet(verbose: bool = False) -> None:
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
