"""`make readme-demo`'s second half (pipelines/readme_demo.py): the README's demo block rewritten
from a run's summary, and --check comparing only the decisions. A made-up log, no pipeline run."""
from flywheel.params import ROOT
from pipelines import readme_demo

SUMMARY = """
== Flywheel run summary ==
data          data version      anomalies            metrics (test)  compared with  blessed  infra p99   pushed            time
------------  ----------------  -------------------  --------------  -------------  -------  ----------  ----------------  ----
span-001.csv  md5:3ba6e0fc9741  0 blocking, 0 other  auc=0.848       -              yes      {p99} ms ok  v1 as production  326s
span-002.csv  md5:78b4df7211e5  0 blocking, 0 other  auc=0.828       v1             {blessed}      13.0 ms ok  {pushed}      235s
- span-001.csv: ok: auc 0.8477 passes the floor
model repository: {root}/build/readme-demo/model_repository/taxi_tips  versions: [1, 2]  production: v1  {canary}
model card: {root}/runs/pipeline_root/flywheel-training-20261204123456/infra-validate-component/validation/model_card.md
"""
README = """# Flywheel

**`make run`** generates the default data and prints:

```
old block
```

After the block.
"""


def log(**values) -> str:
    fields = {"p99": "23.5", "blessed": "yes", "pushed": "v2 as canary", "canary": "canary: v2", "root": ROOT, **values}
    return "make run output\n" + SUMMARY.format(**fields) + "\nafter the summary\n"


def test_the_block_is_rewritten_from_the_summary_with_paths_and_run_ids_cleaned(tmp_path):
    (tmp_path / "run.log").write_text(log())
    (tmp_path / "README.md").write_text(README)
    repository = f"{ROOT}/build/readme-demo/model_repository"
    assert readme_demo.main([str(tmp_path / "run.log"), str(tmp_path / "README.md"), "--repository", repository]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "old block" not in text and text.endswith("After the block.\n")
    assert "model repository: model_repository/taxi_tips  versions: [1, 2]" in text
    assert "model card: runs/pipeline_root/flywheel-training-…/infra-validate-component" in text
    assert str(ROOT) not in text
    # Figures may differ from run to run; the decisions may not.
    (tmp_path / "again.log").write_text(log(p99="31.0"))
    assert readme_demo.main([str(tmp_path / "again.log"), str(tmp_path / "README.md"), "--check"]) == 0
    (tmp_path / "refused.log").write_text(log(blessed="no ", pushed="no          ", canary=""))
    assert readme_demo.main([str(tmp_path / "refused.log"), str(tmp_path / "README.md"), "--check"]) == 1
    assert (tmp_path / "README.md").read_text() == text          # --check writes nothing


def test_decisions_are_each_spans_blessing_and_push_and_the_labels():
    block = readme_demo.summary_block(log(), "")
    assert readme_demo.decisions(block) == ["span-001.csv: blessed yes, pushed v1 as production",
                                            "span-002.csv: blessed yes, pushed v2 as canary",
                                            "versions: [1, 2]  production: v1  canary: v2"]


def test_the_repository_readme_carries_the_demo_block_and_check_reads_it(tmp_path):
    """README.md itself: the block after "**`make run`**" holds a summary whose decisions --check
    compares (both spans and the labels), and a log with those decisions passes it."""
    readme = (ROOT / "README.md").read_text()
    first, last = readme_demo.readme_block(readme)
    shown = readme.splitlines()[first:last]
    assert shown[0] == readme_demo.HEADER
    spans, labels = readme_demo.decisions(shown)[:-1], readme_demo.decisions(shown)[-1]
    assert [span.split(":")[0] for span in spans] == ["span-001.csv", "span-002.csv"]
    assert labels.startswith("versions: [1, 2]  production: v1")
    (tmp_path / "run.log").write_text("make run output\n" + "\n".join(shown) + "\n")
    (tmp_path / "README.md").write_text(readme)
    assert readme_demo.main([str(tmp_path / "run.log"), str(tmp_path / "README.md"), "--check"]) == 0
