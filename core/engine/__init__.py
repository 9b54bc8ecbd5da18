"""The job engine: job types, enqueue, the broker and consumer, claims and results, retries, dispatch, recovery, schedules, queries, stats, dead letters and redrive. Knows no feature."""
