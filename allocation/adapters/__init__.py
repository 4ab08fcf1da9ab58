"""Adapters: everything that touches PostgreSQL, Kafka, the schema registry or the wire format."""
