"""The three Siyu services: ingest, segment and outreach. They talk only through Kafka."""
