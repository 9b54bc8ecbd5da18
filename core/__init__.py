"""Jobyard's domain logic, persistence and provider clients. Imports neither workers nor control_api."""
