"""Dramatiq actors (one module per job family), the job lifecycle middleware and the scheduler."""
