"""Siyu outreach service."""
