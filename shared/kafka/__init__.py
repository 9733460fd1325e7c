"""Kafka adapters: producer factory, topics, and the consumer runner (decode, process, commit)."""
