"""The worker core: parse -> plan -> features -> score -> the batch's changes, as values (no Kafka, no Redis)."""
