"""Per-problem scores: difficulty (pass rate over k rollouts) and diversity (embedding clusters)."""
