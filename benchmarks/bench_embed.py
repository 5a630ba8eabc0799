"""Diversity embedders: the static (model2vec) embedder distilled from MiniLM against MiniLM itself.

On the real questions of the shared data (TabMWP, GSM8K, MATH-V, as ingest normalises them), in one process:
  speed        sentences/s and CPU ms per sentence of each embedder (models loaded and warmed up first),
               and the CPU-hours 1.6M questions would take
  clusters     k-means as the pipeline fits it (MiniBatchKMeans, k=64, the same seed) on each embedding:
               adjusted Rand index and NMI between the two labelings; beside it, MiniLM against MiniLM
               with another k-means seed, the agreement one embedding has with itself
  types        the pipeline's problem-type classifier (problem_type.fit_classifier) on each embedding,
               held-out accuracy on bench_problem_types' stratified split of the labelled MATH-V problems

    python benchmarks/bench_embed.py [--clusters 64] [--seed 0] [--projected 1600000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_problem_types import labelled_problems  # noqa: E402

from pipeline.ingest.sources import SourceConfig, make_adapter  # noqa: E402
from pipeline.paths import default_data_root  # noqa: E402
from pipeline.score.diversity import DiversityStageConfig, Embedder, embed, static_model  # noqa: E402
from pipeline.score.problem_type import ProblemTypeConfig, classify, fit_classifier  # noqa: E402
from pipeline.text import normalise_text  # noqa: E402


def questions_of(data_root: Path) -> dict[str, list[str]]:
    """Per source, its questions through the ingest adapters (the text the diversity stage embeds)."""
    found = {}
    for name, fmt, path in [("tabmwp", "tabmwp", "tabmwp/problems.json"), ("gsm8k", "gsm8k", "gsm8k/test.jsonl"),
                            ("mathvision", "mathvision", "mathvision/test.jsonl")]:
        adapter = make_adapter(SourceConfig(name=name, format=fmt, path=path, domain="bench"), data_root)
        found[name] = [normalise_text(adapter.to_fields(r).question) for r in adapter.records(0, adapter.count())]
    return found


def timed_embed(texts: list[str], config: DiversityStageConfig) -> tuple[np.ndarray, float, float]:
    embedder = Embedder(config)
    embedder.encode(texts[:64])  # loaded and warmed up outside the timing
    wall, cpu = time.perf_counter(), time.process_time()
    vectors = embedder.encode(texts)
    return vectors, time.perf_counter() - wall, time.process_time() - cpu


def kmeans_labels(vectors: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    from sklearn.cluster import MiniBatchKMeans  # as ClusterCentroids fits it

    return MiniBatchKMeans(n_clusters=clusters, random_state=seed, n_init=3).fit(vectors).labels_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_root())
    parser.add_argument("--clusters", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--static-dims", type=int, default=DiversityStageConfig().static_dims)
    parser.add_argument("--test-share", type=float, default=0.2)
    parser.add_argument("--projected", type=int, default=1_600_000, help="questions to project CPU-hours for")
    args = parser.parse_args()

    from sklearn.metrics import accuracy_score, adjusted_rand_score, normalized_mutual_info_score
    from sklearn.model_selection import train_test_split

    minilm = DiversityStageConfig()
    static = DiversityStageConfig(embedder="static", static_dims=args.static_dims)
    started = time.perf_counter()
    folder = static_model(static)
    print(f"static embedder: {folder} (ready in {time.perf_counter() - started:.1f} s; distilled once per machine)")

    by_source = questions_of(args.data)
    texts = [q for qs in by_source.values() for q in qs]
    chars = np.mean([len(t) for t in texts])
    print(f"{len(texts)} questions ({', '.join(f'{k} {len(v)}' for k, v in by_source.items())}), mean {chars:.0f} chars\n")

    results = {}
    for name, config in [("minilm", minilm), ("static", static)]:
        results[name] = timed_embed(texts, config)
    print(f"{'embedder':<8} {'dim':>4} {'sentences/s':>12} {'CPU ms/sentence':>16} {f'CPU-hours for {args.projected:,}':>22}")
    for name, (vectors, wall, cpu) in results.items():
        hours = cpu / len(texts) * args.projected / 3600
        print(f"{name:<8} {vectors.shape[1]:>4} {len(texts) / wall:>12.0f} {cpu / len(texts) * 1000:>16.3f} {hours:>22.2f}")
    (_, wall_m, cpu_m), (_, wall_s, cpu_s) = results["minilm"], results["static"]
    print(f"static / minilm: {wall_m / wall_s:.0f}x sentences/s, {cpu_m / cpu_s:.0f}x less CPU\n")

    a, b = results["minilm"][0], results["static"][0]
    labels_m, labels_s = kmeans_labels(a, args.clusters, args.seed), kmeans_labels(b, args.clusters, args.seed)
    labels_m2 = kmeans_labels(a, args.clusters, args.seed + 1)
    print(f"k-means clusters, k={args.clusters}, seed {args.seed}: {'ARI':>6} {'NMI':>6}")
    for name, x, y in [("static vs minilm", labels_m, labels_s), (f"minilm vs minilm (seed {args.seed + 1})", labels_m, labels_m2)]:
        print(f"  {name:<40} {adjusted_rand_score(x, y):>6.3f} {normalized_mutual_info_score(x, y):>6.3f}")

    questions, types = labelled_problems(args.data / "mathvision" / "test.jsonl")
    labels = np.array(types)
    train, test = train_test_split(np.arange(len(labels)), test_size=args.test_share, random_state=args.seed, stratify=labels)
    print(f"\nproblem-type classifier (pipeline's), MATH-V: train {len(train)}, held back {len(test)}")
    for name, config in [("minilm", minilm), ("static", static)]:
        vectors = embed(questions, config)
        names, weights = fit_classifier(vectors[train], labels[train].tolist(), ProblemTypeConfig())
        accuracy = accuracy_score(labels[test], np.array(names)[classify(vectors[test], weights)[0]])
        print(f"  {name:<8} held-out accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
