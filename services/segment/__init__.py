"""Siyu segment service."""
