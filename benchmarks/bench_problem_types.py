"""Problem-type classifier: accuracy on a held-back labelled split it was not trained on.

The labelled problems are MATH-V's (its 16 subjects mapped to the 13 types). A seeded stratified split
holds back `--test-share` of them; every classifier is fitted on the rest, on the same packaged MiniLM
embeddings the pipeline computes (the pipeline's classifier through its own functions), and scored on the held-back part in one process run:

    python benchmarks/bench_problem_types.py [--test-share 0.2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.ingest.sources import mathvision_fields  # noqa: E402
from pipeline.paths import default_data_root  # noqa: E402
from pipeline.score.diversity import DiversityStageConfig, embed  # noqa: E402
from pipeline.score.problem_type import ProblemTypeConfig, classify, fit_classifier  # noqa: E402


def labelled_problems(path: Path) -> tuple[list[str], list[str]]:
    questions, types = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = mathvision_fields(json.loads(line), "")
        questions.append(fields.question)
        types.append(fields.problem_type)
    return questions, types


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_root() / "mathvision" / "test.jsonl")
    parser.add_argument("--test-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

    questions, types = labelled_problems(args.data)
    started = time.perf_counter()
    vectors = embed(questions, DiversityStageConfig())
    print(f"{len(questions)} labelled MATH-V problems, {len(set(types))} types, embedded in {time.perf_counter() - started:.1f} s")
    labels = np.array(types)
    train, test = train_test_split(np.arange(len(labels)), test_size=args.test_share, random_state=args.seed, stratify=labels)
    print(f"train {len(train)}, held back {len(test)} (stratified, seed {args.seed})\n")

    names, weights = fit_classifier(vectors[train], labels[train].tolist(), ProblemTypeConfig())
    predictions = {
        "majority type (baseline)": np.full(len(test), Counter(labels[train]).most_common(1)[0][0]),
        "nearest centroid": NearestCentroid().fit(vectors[train], labels[train]).predict(vectors[test]),
        "10-NN, cosine": KNeighborsClassifier(10, metric="cosine").fit(vectors[train], labels[train]).predict(vectors[test]),
        "logistic regression (pipeline)": np.array(names)[classify(vectors[test], weights)[0]],
    }
    print(f"{'classifier':<30} {'accuracy':>9} {'macro F1':>9}")
    for name, predicted in predictions.items():
        accuracy = accuracy_score(labels[test], predicted)
        macro = f1_score(labels[test], predicted, average="macro", zero_division=0)
        print(f"{name:<30} {accuracy:>9.3f} {macro:>9.3f}")
    chosen = predictions["logistic regression (pipeline)"]
    print("\nlogistic regression, recall per type (held-back problems):")
    for name in sorted(set(labels[test])):
        mask = labels[test] == name
        print(f"  {name:<24} {int((chosen[mask] == name).sum()):>4} / {int(mask.sum()):<4} {float((chosen[mask] == name).mean()):.2f}")


if __name__ == "__main__":
    main()
