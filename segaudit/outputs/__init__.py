"""Outputs: the ranking CSV, terminal tables, Markdown, overlays, the HTML report, issue masks."""
