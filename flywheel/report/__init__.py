"""Self-contained HTML reports of drift and skew: one page, no outside URL, opened anywhere.

- `charts`: what a chart of one feature draws (reference and current shares in readable bins);
- `model`: what a report says (comparisons of features with decisions, anomalies, severities);
- `build`: a report from the drift rule's results (validate, the live window);
- `render`: the report as HTML (inline CSS and SVG; nothing fetched).
"""
