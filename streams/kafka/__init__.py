"""Kafka plumbing: clients, topic admin, the embedded broker, TLS/SASL, topic names and configs."""
