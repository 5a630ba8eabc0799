"""Teacher and policy generation: one interface, several backends, a resumable per-shard stage."""
