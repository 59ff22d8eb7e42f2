"""Kafka adapters of the worker: shared client configuration, transaction consumer, decision sink, label feed."""
