"""Running a farm: `jobyard up` (supervisor, embedded Postgres and Redis), release, readiness, local keys, doctor."""
