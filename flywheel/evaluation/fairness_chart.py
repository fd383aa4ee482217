"""The model card's fairness picture: each slice's metric with its interval, production beside
the candidate, one panel per feature or crossed pair (a small PNG beside model_card.md)."""
from __future__ import annotations

from flywheel.evaluation.fairness import OK, FairnessReport

CANDIDATE, PRODUCTION, FAILED = "#1f63d1", "#8a929e", "#c62828"
MAX_HEIGHT_IN = 30          # a grouping has at most max_slices rows, but params may raise that


def write_png(report: FairnessReport, path: str) -> None:
    """Draw the report to `path`; a report without judged slices gets a one-line picture saying so."""
    import matplotlib
    matplotlib.use("Agg")      # no display in a pipeline task
    from matplotlib import pyplot as plt

    groupings: dict[str, list] = {}
    for s in report.slices:
        groupings.setdefault(s.grouping, []).append(s)
    shown = {g: [s for s in members if s.status == OK] for g, members in groupings.items()}
    shown = {g: members for g, members in shown.items() if members}
    failed = {(f.grouping, f.slice) for f in report.failures}
    if not shown:
        fig, ax = plt.subplots(figsize=(6, 0.8))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no slice large enough to judge ({report.summary()})", ha="center", va="center",
                fontsize=9)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return
    heights = [max(len(m), 2) * 0.32 + 0.6 for m in shown.values()]
    fig, axes = plt.subplots(len(shown), 1, figsize=(7, min(sum(heights), MAX_HEIGHT_IN)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (grouping, members) in zip(axes[:, 0], shown.items()):
        rows = range(len(members))
        for y, s in zip(rows, members):
            colour = FAILED if (grouping, s.slice) in failed else CANDIDATE
            ax.errorbar(s.value, y + 0.12, xerr=[[s.value - s.low], [s.high - s.value]], fmt="o", color=colour,
                        ms=4, capsize=2, lw=1.2, label="candidate" if y == 0 else None)
            if s.production is not None and s.production_low is not None:
                ax.errorbar(s.production, y - 0.12, xerr=[[s.production - s.production_low],
                                                          [s.production_high - s.production]],
                            fmt="s", color=PRODUCTION, ms=3, capsize=2, lw=1, label="production" if y == 0 else None)
        ax.set_yticks(list(rows))
        ax.set_yticklabels([f"{s.slice[:32]} (n={s.rows})" for s in members], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(grouping, fontsize=8, loc="left")
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", color="#e6e9ee")
    axes[0, 0].legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel(f"{report.metric} with {report.confidence:.0%} bootstrap interval", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")   # long slice names must not be cut off
    plt.close(fig)
