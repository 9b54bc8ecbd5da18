"""Who may call the farm: API keys and dashboard sessions."""
