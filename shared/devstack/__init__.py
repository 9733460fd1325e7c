"""The embedded dev stack (PostgreSQL and a Kafka-protocol broker from PyPI) and `siyu dev`."""
