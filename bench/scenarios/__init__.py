"""One module per scenario; each has ``run(bench, args) -> dict`` of figures for the report."""
