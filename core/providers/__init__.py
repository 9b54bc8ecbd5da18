"""Clients for outside systems, one module per system; every failure maps onto core.errors."""
