"""How well the review queue finds wrong labels on several datasets from different domains.

The datasets (bench/ranking_data.py; sources and licences in docs/ranking-datasets.md): the demo digits,
letters of ten writing systems rendered from Noto fonts, Papirus icons by context, Noto emoji by Unicode
group. Each gets two kinds of label noise at fixed seeds:

- uniform: 10% of the images get another class's label at random (the demo's flips, on the digits);
- biased:  a third of the classes (at least two) each have 25% of their images labeled as their most
  similar class (nearest class centre in plain Lite0 embeddings), the lesson's "biased noisy" case.

Three rankings run on the same images and the same noise in the same run:

- lesson:  the lesson's top losses, a head's in-sample losses on the images it trained on (plain Lite0);
- before:  Loupe's ranking until now: plain Lite0 embeddings at 128 + 224 px, one 5-fold split;
- loupe:   today's ranking (labeling/ranking/scoring.py): Lite0's last four stage ends, mean- and
  max-pooled, at 128 + 224 px, 5 folds averaged over FOLD_SPLITS splits, cleanlab self-confidence;
- quick:   the same with one fold split, the quick loop's first pass after decisions.

`--tried` adds what was measured and dropped, on today's features: cleanlab's normalized margin,
per-class-threshold adjusted self-confidence, confident-learning issues first, and refitting without the
suspected labels. Embeddings are computed with the product's embedders (ONNX Runtime) and cached beside
the datasets. Per row: precision@n (n = the number of wrong labels), recall after reviewing 10% and 20%
of the images, AUROC, seconds to score. Last line: one JSON object.

    .venv/bin/python bench/ranking.py [--seeds 1234,7,99] [--only digits,icons] [--tried]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import print_table, replay
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ranking_data import DATASETS, cache_dir, load  # noqa: E402

from labeling.imports.demo import flipped_labels  # noqa: E402
from labeling.ranking.scoring import (  # noqa: E402
    FEATURE_SIZES,
    FOLD_SPLITS,
    estimated_wrong_labels,
    fit_head,
    head_features,
    label_error_scores,
    out_of_sample_probabilities,
)
from models.embedder import Embedder  # noqa: E402

BIASED_FRACTION = 0.25
METHODS = ("lesson", "before", "quick", "loupe")


def embeddings(dataset: str, paths: list[Path], stages: bool) -> np.ndarray:
    """The product's embeddings of every image at FEATURE_SIZES side by side, cached per dataset and kind."""
    cache = cache_dir() / "embeddings" / f"{dataset}-{'stages' if stages else 'plain'}.npy"
    if cache.exists():
        return np.load(cache)
    blocks = []
    with tempfile.TemporaryDirectory() as temp:
        for size in FEATURE_SIZES:
            embedder = Embedder(Path(temp), size=size, stages=stages)
            rows = []
            for start in range(0, len(paths), 64):
                images = []
                for path in paths[start : start + 64]:
                    with Image.open(path) as image:
                        image.load()
                        images.append(image)
                rows.append(embedder.embed(images))
            blocks.append(np.vstack(rows))
    matrix = np.hstack(blocks)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, matrix)
    return matrix


def biased_noise(truth: np.ndarray, classes: int, plain: np.ndarray, seed: int) -> np.ndarray:
    """A copy where a few classes each lose BIASED_FRACTION of their images to their most similar class."""
    rng = np.random.default_rng(seed)
    centres = np.stack([plain[truth == c].mean(axis=0) for c in range(classes)])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    similarity = centres @ centres.T
    np.fill_diagonal(similarity, -np.inf)
    given = truth.copy()
    for source in rng.choice(classes, size=max(2, classes // 3), replace=False):
        rows = np.flatnonzero(truth == source)
        given[rng.choice(rows, size=round(len(rows) * BIASED_FRACTION), replace=False)] = similarity[source].argmax()
    return given


def rank(method: str, features: dict, given: np.ndarray, shared: dict) -> np.ndarray:
    """Label-error scores of one method (higher: more likely wrong); shared caches today's probabilities."""
    if method == "lesson":
        head = fit_head(features["plain"], given)
        return label_error_scores(head.predict_proba(features["plain"]), given)
    if method == "before":
        probabilities, _ = out_of_sample_probabilities(features["plain"], given, splits=1)
        return label_error_scores(probabilities, given)
    if method == "quick":
        probabilities, _ = out_of_sample_probabilities(features["stages"], given, splits=1)
        return label_error_scores(probabilities, given)
    if "stages" not in shared:  # today's probabilities, computed once for every method built on them
        shared["stages"] = out_of_sample_probabilities(features["stages"], given)[0]
    probabilities = shared["stages"]
    if method == "loupe":
        return label_error_scores(probabilities, given)
    if method == "normalized_margin":
        return label_error_scores(probabilities, given, method)
    if method == "adjusted_self_confidence":
        from cleanlab.rank import get_label_quality_scores

        return 1 - get_label_quality_scores(given, probabilities, adjust_pred_probs=True)
    if method == "issues_first":
        from cleanlab.filter import find_label_issues

        return label_error_scores(probabilities, given) + find_label_issues(given, probabilities)
    if method == "refit_without_suspects":
        # Confident learning's pruning: drop the estimated number of likeliest-wrong labels, refit, rescore.
        suspects = np.zeros(len(given), dtype=bool)
        first = label_error_scores(probabilities, given)
        suspects[np.argsort(-first)[: estimated_wrong_labels(probabilities, given) or 0]] = True
        refit = np.zeros_like(probabilities)
        from sklearn.model_selection import StratifiedKFold

        for train_rows, held_out in StratifiedKFold(5, shuffle=True, random_state=0).split(given, given):
            kept = train_rows[~suspects[train_rows]]
            head = fit_head(features["stages"][kept], given[kept])
            refit[np.ix_(held_out, head.classes_)] = head.predict_proba(features["stages"][held_out])
        return label_error_scores(refit, given)
    raise ValueError(method)


TRIED = ("normalized_margin", "adjusted_self_confidence", "issues_first", "refit_without_suspects")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1234,7,99", help="noise seeds; figures are means over them")
    parser.add_argument("--only", default=",".join(DATASETS))
    parser.add_argument("--tried", action="store_true", help="also the alternatives measured and dropped")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    methods = METHODS + (TRIED if args.tried else ())

    results: dict[tuple[str, str, str], list[dict]] = {}
    sizes = {}
    for dataset in args.only.split(","):
        paths, names = load(dataset)
        class_names, truth = np.unique(names, return_inverse=True)
        started = time.monotonic()
        plain = embeddings(dataset, paths, stages=False)
        features = {"plain": head_features(plain), "stages": head_features(embeddings(dataset, paths, stages=True))}
        sizes[dataset] = (len(paths), len(class_names), time.monotonic() - started)
        for seed in seeds:
            noises = {
                "uniform": flipped_labels(truth, seed=seed, classes=len(class_names)),  # the demo's rule, 10%
                "biased": biased_noise(truth, len(class_names), plain, seed),
            }
            for noise, given in noises.items():
                shared: dict = {}
                for method in methods:
                    started = time.monotonic()
                    scores = rank(method, features, given, shared)
                    seconds = time.monotonic() - started
                    results.setdefault((dataset, noise, method), []).append(
                        {**replay(scores, given != truth), "seconds": seconds, "wrong": int((given != truth).sum())}
                    )
        print(f"{dataset}: {len(paths)} images, {len(class_names)} classes, done", file=sys.stderr, flush=True)

    def mean(dataset: str, noise: str, method: str, key: str) -> float:
        return float(np.mean([run[key] for run in results[(dataset, noise, method)]]))

    rows = []
    for (dataset, noise, method), runs in results.items():
        rows.append(
            [
                dataset,
                noise,
                method,
                runs[0]["wrong"],
                *(round(mean(dataset, noise, method, key), 3) for key in ("precision_at_n", "recall_at_10pct")),
                *(round(mean(dataset, noise, method, key), 3) for key in ("recall_at_20pct", "auroc")),
                round(mean(dataset, noise, method, "seconds"), 1),
            ]
        )
    datasets = list(sizes)
    others = [d for d in datasets if d != "digits"]
    for noise in ("uniform", "biased"):
        for group, members in (("mean, all", datasets), ("mean, non-digits", others)):
            for method in methods:
                if members:
                    values = [
                        np.mean([mean(d, noise, method, key) for d in members])
                        for key in ("precision_at_n", "recall_at_10pct", "recall_at_20pct", "auroc", "seconds")
                    ]
                    rows.append([group, noise, method, "", *(round(float(v), 3) for v in values)])
    print_table(
        f"label-error ranking, means over noise seeds {seeds}; embeddings: "
        + ", ".join(f"{d} {n} images / {c} classes in {s:.0f} s" for d, (n, c, s) in sizes.items()),
        ["dataset", "noise", "method", "wrong", "precision@n", "recall@10%", "recall@20%", "AUROC", "seconds"],
        rows,
    )

    def overall(noise: str, method: str, key: str, members: list[str]) -> float | None:
        return round(float(np.mean([mean(d, noise, method, key) for d in members])), 4) if members else None

    summary = {
        "datasets": datasets,
        "seeds": seeds,
        "fold_splits": FOLD_SPLITS,
        "mean_precision_at_n": overall("uniform", "loupe", "precision_at_n", datasets),
        "mean_auroc": overall("uniform", "loupe", "auroc", datasets),
        "mean_precision_at_n_biased": overall("biased", "loupe", "precision_at_n", datasets),
        "baseline_mean_precision_at_n": overall("uniform", "before", "precision_at_n", datasets),
        "baseline_mean_precision_at_n_biased": overall("biased", "before", "precision_at_n", datasets),
        "lesson_mean_precision_at_n": overall("uniform", "lesson", "precision_at_n", datasets),
        "non_digits_precision_at_n": overall("uniform", "loupe", "precision_at_n", others),
        "non_digits_baseline_precision_at_n": overall("uniform", "before", "precision_at_n", others),
        "non_digits_precision_at_n_biased": overall("biased", "loupe", "precision_at_n", others),
        "non_digits_baseline_precision_at_n_biased": overall("biased", "before", "precision_at_n", others),
        "digits_precision_at_n": round(mean("digits", "uniform", "loupe", "precision_at_n"), 4)
        if "digits" in sizes
        else None,
        "digits_baseline_precision_at_n": round(mean("digits", "uniform", "before", "precision_at_n"), 4)
        if "digits" in sizes
        else None,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
