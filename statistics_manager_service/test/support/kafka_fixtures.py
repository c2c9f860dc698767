"""Pytest fixtures around the real Kafka-protocol broker (filled in with the broker support)."""
