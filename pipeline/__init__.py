"""The curation and training library: one module per stage, no orchestration inside."""
