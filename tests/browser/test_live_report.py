"""The live drift report (`make live-report`) from a real sidecar: a version trained and pushed by
the pipeline's steps, the development model server, the sidecar (`python -m monitoring`), shifted
traffic through it; then the report is made from the sidecar's /metrics and the version's baseline
and opened offline in Chromium. Cost: about 40 s (training the version, starting both servers).
"""
import contextlib
import io
import json
import time
import urllib.request

import numpy as np
import pytest

from pipelines import live_report
from tests.support.browser import assert_offline_and_drawn, assert_picture
from tests.support.bundles import train_versions
from tests.support.frames import make_frame
from tests.support.net import free_port
from tests.support.servers import MODEL_NAME, ServerProcess, push_version, start_dev_server, wait_http

ROWS = 400


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    versions = train_versions(root / "trained", [make_frame(2000, seed=1)], MODEL_NAME, "label")
    repository = root / "model_repository"
    push_version(versions, repository, 1)
    server = start_dev_server(repository, root)
    port = free_port()
    sidecar = ServerProcess(["-m", "monitoring", "--host", "127.0.0.1", "--port", str(port), "--upstream",
                             server.rest_url, "--model-repository", str(repository), "--model-name", MODEL_NAME,
                             "--log-dir", str(root / "log"), "--version-poll-s", "0.2"], root / "sidecar.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz/ready", timeout_s=60)
        yield url, repository
    finally:
        sidecar.stop()
        server.stop()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _send_shifted_traffic(url: str) -> None:
    """Distances three times longer and mostly cash: the two features the report must put first."""
    rng = np.random.default_rng(5)
    rows = [{"distance": float(d), "passengers": int(p), "payment": str(c), "start_time": int(t)}
            for d, p, c, t in zip(3 * rng.gamma(2.0, 2.0, ROWS), rng.integers(1, 5, ROWS),
                                  rng.choice(["card", "cash", "mobile"], ROWS, p=[0.1, 0.8, 0.1]),
                                  1767600000 + rng.integers(0, 7 * 86400, ROWS))]
    for row in rows[:10]:
        row["payment"] = "voucher"      # not in the schema's domain: counted as a schema anomaly
    for start in range(0, ROWS, 50):
        assert "predictions" in _post(f"{url}/v1/models/{MODEL_NAME}:predict", {"instances": rows[start:start + 50]})


def _window_rows(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        found = live_report.read_metrics(response.read().decode(), MODEL_NAME)
    return found["rows"]


def test_live_report_from_the_sidecar(served, browser, screenshots, tmp_path):
    url, repository = served
    _send_shifted_traffic(url)
    for _ in range(100):        # the sidecar's observer thread fills the window off the response path
        if _window_rows(url) >= ROWS:
            break
        time.sleep(0.1)
    out = tmp_path / "live.html"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = live_report.main(["--metrics", f"{url}/metrics", "--model-repository", str(repository),
                                 "--model-name", MODEL_NAME, "--out", str(out)])
    assert code == 0 and str(out) in printed.getvalue()
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        scraped = live_report.read_metrics(response.read().decode(), MODEL_NAME)
    assert scraped["rows"] >= ROWS and scraped["version"] == 1

    page = browser.open(out)
    drawn = assert_offline_and_drawn(page, out)
    cards = page.evaluate("Array.from(document.querySelectorAll('#live article.card h3')).map(h => h.textContent)")
    assert sorted(cards) == sorted(scraped["measures"]) and len(drawn) == len(cards)
    # The joint check's section: the pairs the sidecar exports, each with its correlations.
    pairs = page.evaluate("Array.from(document.querySelectorAll('#joint article.card h3')).map(h => h.textContent)")
    assert scraped["joint"]["compared"] == 1 and sorted(pairs) == sorted(scraped["joint_pairs"]) and pairs
    first_pair = scraped["joint_pairs"][pairs[0]]
    text = page.evaluate("document.querySelector('#joint article.card').textContent")
    assert f"rreference{first_pair['r_ref']:+.3f}" in text.replace(" ", "")
    # The summary puts the shifted features first (largest PSI), and shows the scraped numbers.
    first = page.evaluate("Array.from(document.querySelectorAll('#summary ~ table tbody tr')).slice(0, 2)"
                          ".map(r => r.cells[2].textContent)")
    assert set(first) == {"distance", "payment"}
    psi = scraped["measures"]["distance"]["psi"]
    measures = page.evaluate("document.querySelector('article.card').textContent")
    assert f"psi {live_report.live.number(psi)}" in measures
    # The sidecar's schema anomaly counters are the report's anomalies.
    assert scraped["anomalies"] == {("payment", "out_of_domain"): 10}
    shown = page.evaluate("Array.from(document.querySelectorAll('#anomalies + table tbody tr'))"
                          ".map(r => [r.cells[1].textContent, r.cells[3].textContent])")
    assert shown == [["payment", "out_of_domain"]]
    assert_picture(page.screenshot(screenshots / "live-report.png"), current=False)   # measures, not values
    page.close()


def test_live_report_says_why_when_there_is_nothing_to_report(served, tmp_path):
    url, repository = served
    closed = f"http://127.0.0.1:{free_port()}/metrics"
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        assert live_report.main(["--metrics", closed, "--out", str(tmp_path / "a.html")]) == 1
        assert live_report.main(["--metrics", f"{url}/metrics", "--model-name", "other",
                                 "--model-repository", str(repository), "--out", str(tmp_path / "b.html")]) == 1
        assert live_report.main(["--metrics", f"{url}/metrics", "--model-name", MODEL_NAME, "--version", "7",
                                 "--model-repository", str(repository), "--out", str(tmp_path / "c.html")]) == 1
    lines = errors.getvalue().splitlines()
    assert closed in lines[0] and "did not answer" in lines[0]
    assert f"no drift metrics for model 'other' (models found: {MODEL_NAME})" in lines[1]
    assert "no baseline" in lines[2]
    assert not list(tmp_path.glob("*.html"))


def test_what_is_not_a_sidecars_metrics_is_refused():
    for text in ("<html>login page</html>\n", 'flywheel_feature_drift{model="m",feature="a",measure="psi"} abc\n'):
        with pytest.raises(live_report.ReportError, match="not Prometheus text exposition"):
            live_report.read_metrics(text, "m")
