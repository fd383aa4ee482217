"""Run the training pipeline on this machine with kfp.local: the same components and DAG as on
Kubeflow, each task a subprocess.

kfp.local's SubprocessRunner starts each task as `python3 -m kfp.dsl.executor_main` with the
`python3` on PATH, so local runs put this interpreter's bin/ first on PATH. Everything kfp.local
and the tasks print (executor JSON, TensorFlow's start-up noise, the steps' own progress) goes to
a log file; the console gets one line per task with its time and status, then the summary.
"""
from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import re
import sys
import time
import warnings

from pipelines import console, local_runners
from pipelines.summary import RunSummary, summarize

DEFAULT_PIPELINE_ROOT = "runs/pipeline_root"
LOG_DIR = "runs/logs"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TASK_START = re.compile(r"Executing task '([\w-]+)'")
TASK_END = re.compile(r"Task '([\w-]+)' finished with status (\w+)")
EXCEPTION_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")
COMPONENT_SUFFIX = "-component"


def step_name(task: str) -> str:
    """kfp.local names a task after its component function: `ingest-component` -> `ingest`."""
    return task.removesuffix(COMPONENT_SUFFIX)


def failure_cause(lines) -> str:
    """The last `SomeError: message` line a failed task printed, without its module path."""
    for line in reversed(list(lines)):
        match = EXCEPTION_LINE.match(ANSI.sub("", line))
        if match:
            return f"{match.group(1)}: {match.group(2).strip()}"
    return ""


class TaskLog(io.TextIOBase):
    """Everything kfp.local prints goes to the log file; each task's start and end become one
    progress line on the console. Keeps each task's last lines, where a failure's cause is."""

    def __init__(self, log, console, verbose: bool = False, keep: int = 400):
        self.log, self.console, self.verbose = log, console, verbose
        self.lines: dict[str, collections.deque] = {}
        self.seconds: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self._task, self._started, self._partial = "", 0.0, ""
        self._keep = keep

    def write(self, text: str) -> int:
        self.log.write(text)
        if self.verbose:
            self.console.write(text)
        *complete, self._partial = (self._partial + text).split("\n")
        for line in complete:
            self._line(ANSI.sub("", line))
        return len(text)

    def _line(self, line: str) -> None:
        start, end = TASK_START.search(line), TASK_END.search(line)
        if start:
            self._task, self._started = step_name(start.group(1)), time.time()
            self.lines[self._task] = collections.deque(maxlen=self._keep)
            if not self.verbose and self.console.isatty():  # a placeholder the end line overwrites
                self.console.write(f"  {self._task:<14} ...")
                self.console.flush()
        elif end and self._task:
            self.seconds[self._task] = time.time() - self._started
            self.status[self._task] = end.group(2)
            if not self.verbose:
                self.console.write(f"\r  {self._task:<14} {self.seconds[self._task]:6.1f}s  {end.group(2).lower()}\n")
                self.console.flush()
        elif self._task:
            self.lines[self._task].append(line)

    def flush(self) -> None:
        self.log.flush()
        self.console.flush()


class LocalOutputs:
    """summary.StepOutputs of a kfp.local run: its task directories under the pipeline root."""

    def __init__(self, run_dir: str, failed_step: str = "", error: str = ""):
        self.run_dir, self.failed_step, self.error = run_dir, failed_step, error

    def _task_dir(self, step: str) -> str:
        return os.path.join(self.run_dir, f"{step}{COMPONENT_SUFFIX}")

    def metadata(self, step: str, output: str) -> dict:
        try:
            with open(os.path.join(self._task_dir(step), "executor_output.json")) as f:
                executor_output = json.load(f)
        except (OSError, ValueError):
            return {}
        for artifact in executor_output.get("artifacts", {}).get(output, {}).get("artifacts", []):
            return artifact.get("metadata", {})
        return {}

    def path(self, step: str, output: str) -> str | None:
        path = os.path.join(self._task_dir(step), output)
        return path if os.path.exists(path) else None


def log_path(label: str) -> str:
    os.makedirs(LOG_DIR, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(label)) or "run"
    return os.path.abspath(os.path.join(LOG_DIR, f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}.log"))


def run_local(arguments: dict, pipeline_root: str = DEFAULT_PIPELINE_ROOT, verbose: bool = False,
              log_file: str | None = None, runner: str = "subprocess") -> RunSummary:
    """Run the whole DAG with kfp.local, each task in a subprocess or in the component image
    (`runner`, pipelines/local_runners.py); never raises for a failed task."""
    from pipelines.training_pipeline import PIPELINE_NAME, training_pipeline

    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    console.quiet(verbose)
    pipeline_root = os.path.abspath(pipeline_root)
    os.makedirs(pipeline_root, exist_ok=True)
    before = set(os.listdir(pipeline_root))
    # kfp.local warns once per task that the component's base_image is not a plain Python image.
    # Here that is by design: the image is the project's own, and this virtual environment (same
    # lock, project installed) is what it contains.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom",
                            category=RuntimeWarning)
    arguments = local_runners.init(runner, arguments, pipeline_root)
    log_file = log_file or log_path(arguments.get("data_path", "run"))
    started, error, failed = time.time(), "", ""
    with open(log_file, "a") as log:
        tasks = TaskLog(log, sys.stdout, verbose)
        try:
            with contextlib.redirect_stdout(tasks):
                training_pipeline(**arguments)
        except RuntimeError as failure:  # kfp.local: "Pipeline ... finished with status FAILURE. Inner task failed: ..."
            failed = next((t for t, s in tasks.status.items() if s != "SUCCESS"), tasks._task)
            cause = failure_cause(tasks.lines.get(failed, []))
            error = cause or ANSI.sub("", str(failure))
            log.write(f"\n{ANSI.sub('', str(failure))}\n")
    seconds = time.time() - started
    created = sorted(set(os.listdir(pipeline_root)) - before)
    run_dirs = [d for d in created if d.startswith(PIPELINE_NAME)]
    run_dir = os.path.join(pipeline_root, run_dirs[-1]) if run_dirs else pipeline_root
    summary = summarize(LocalOutputs(run_dir, failed, error), arguments.get("data_path", ""),
                        os.path.basename(run_dir), seconds)
    summary.step_seconds, summary.log_file = dict(tasks.seconds), log_file
    return summary
