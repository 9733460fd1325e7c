"""Siyu ingest service."""
