"""Siyu's own common library: config, the touchpoint envelope, Kafka, Postgres, logging, metrics.

Not to be confused with ``../shared``, the team handbook beside the repository.
"""
