"""Which path the data steps take (in memory, streaming, Apache Beam), and the Beam runner's options.

`auto` is decided once, by ingest, from the input's size (`scale.in_memory_max_bytes`), and
recorded in the examples' metadata (`engine`); statistics and validate follow it, so one run never
mixes paths by accident. A forced mode applies to every step.
"""
from __future__ import annotations

from flywheel.params import ScaleParams

IN_MEMORY = "in_memory"
STREAMING = "streaming"
BEAM = "beam"
AUTO = "auto"
ENGINES = (IN_MEMORY, STREAMING, BEAM)
MODES = (AUTO, *ENGINES)
LOCAL_RUNNERS = ("DirectRunner", "PrismRunner")


def check(scale: ScaleParams) -> None:
    if scale.mode not in MODES:
        raise ValueError(f"params: scale.mode must be one of {list(MODES)}, not {scale.mode!r}")
    if scale.batch_rows < 1 or scale.shard_rows < 1:
        raise ValueError(f"params: scale.batch_rows and scale.shard_rows must be >= 1, not "
                         f"{scale.batch_rows} and {scale.shard_rows}")


def choose(scale: ScaleParams, input_bytes: int) -> str:
    """The engine for an input of `input_bytes` (ingest's decision)."""
    check(scale)
    if scale.mode != AUTO:
        return scale.mode
    if input_bytes <= scale.in_memory_max_bytes:
        return IN_MEMORY
    return STREAMING if scale.beam_runner in LOCAL_RUNNERS else BEAM


def follow(scale: ScaleParams, recorded: str | None) -> str:
    """The engine of a step after ingest: the forced mode, else what ingest recorded."""
    check(scale)
    if scale.mode != AUTO:
        return scale.mode
    return recorded if recorded in ENGINES else IN_MEMORY


def pipeline_options(scale: ScaleParams, job_name: str = ""):
    """Beam PipelineOptions: the runner and `scale.beam_options` passed through; the local
    DirectRunner runs `workers` processes (multi_processing), as a laptop's cores allow."""
    from apache_beam.options.pipeline_options import PipelineOptions

    flags = [f"--runner={scale.beam_runner}", *scale.beam_options]
    if scale.beam_runner == "DirectRunner" and not any(f.startswith("--direct_running_mode") for f in flags):
        flags += ["--direct_running_mode=multi_processing", f"--direct_num_workers={max(1, scale.workers)}"]
    if job_name and not any(f.startswith("--job_name") for f in flags):
        flags.append(f"--job_name={job_name}")
    return PipelineOptions(flags)


def workers(scale: ScaleParams) -> int:
    """How many workers the runner was given, for per-worker throughput (1 when not stated)."""
    if scale.beam_runner == "DirectRunner":
        return max(1, scale.workers)
    for flag in scale.beam_options:
        for name in ("--num_workers=", "--max_num_workers=", "--parallelism="):
            if flag.startswith(name):
                return max(1, int(flag.split("=", 1)[1]))
    return 1
