"""Who may call the farm, and how much: API keys, dashboard sessions, a tenant's quotas."""
