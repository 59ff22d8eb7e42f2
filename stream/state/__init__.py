"""The worker's shared state: one store interface, its Redis implementation and keyspace, an in-memory one."""
