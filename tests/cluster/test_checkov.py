"""checkov (its own environment, .venv-tools/, `make tools`) on every rendered overlay and on
docker/Dockerfile: no failed check, and every skipped check carries its reason in the manifest
(`checkov.io/skip<N>: CKV_K8S_<id>=<reason>` annotations)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from tests.support.cluster import OVERLAYS, ROOT

CHECKOV = ROOT / ".venv-tools/bin/checkov"


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory, rendered):
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV.relative_to(ROOT)} missing: run `make tools` (checkov has its own environment)")
    scan = tmp_path_factory.mktemp("checkov")
    for overlay in OVERLAYS:
        (scan / f"{overlay}.yaml").write_text(yaml.safe_dump_all(rendered[overlay], sort_keys=False))
    shutil.copy(ROOT / "docker/Dockerfile", scan / "Dockerfile")
    # --skip-download: no network here, and nothing from a SaaS should change a local verdict.
    result = subprocess.run([str(CHECKOV), "-d", str(scan), "--framework", "kubernetes", "dockerfile",
                             "--skip-download", "--output", "json", "--quiet", "--compact"],
                            capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(scan)})
    try:
        reports = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"checkov gave no JSON report (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return reports if isinstance(reports, list) else [reports]


def test_checkov_scanned_manifests_and_dockerfile(checkov_report):
    frameworks = {r["check_type"]: r["summary"] for r in checkov_report}
    assert set(frameworks) == {"kubernetes", "dockerfile"}, frameworks
    assert frameworks["kubernetes"]["passed"] > 50 and frameworks["dockerfile"]["passed"] > 10


def test_no_failed_checks(checkov_report):
    failed = [f"{r['check_type']}: {c['check_id']} {c['check_name']} -- {c['resource']} ({c['file_path']})"
              for r in checkov_report for c in r["results"].get("failed_checks", [])]
    assert not failed, "\n".join(failed)


def test_every_skip_has_a_reason(checkov_report):
    skipped = [c for r in checkov_report for c in r["results"].get("skipped_checks", [])]
    for check in skipped:
        assert (check.get("check_result", {}).get("suppress_comment") or "").strip(), \
            f"{check['check_id']} skipped without a reason on {check['resource']}"
