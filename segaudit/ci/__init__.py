"""What a dataset's CI runs: gates, diff, check."""
