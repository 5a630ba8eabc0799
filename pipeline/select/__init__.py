"""Selection of the two published sets from problems, verified generations and score columns."""
