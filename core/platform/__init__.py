"""What every layer stands on: settings, the database and its tables, migrations, sealing, logs, rate limits, pagination, the address guard. Knows nothing of jobs."""
