"""Lifecycle models (AARRR, AISCEAS, custom): stage rules as data, evaluated as pure functions.

``conditions`` (the compiled predicates), ``grammar`` (documents validated into models and
conditions, the built-in packs) and ``model`` (a model's evaluation). Import from those modules.
"""
