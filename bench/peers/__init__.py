"""The peers Jobyard is measured against: bare Dramatiq and Celery, each with a no-op task."""
