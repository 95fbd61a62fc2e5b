"""Which 2-D projection draws the dataset map: speed, and how well the map keeps classes and neighbours.

On the four datasets of bench/ranking_data.py (digits, rendered scripts, icons, emoji), with the product's
features (Lite0 stage ends at 128 + 224 px, head_features: the features the queue's ranking is scored on),
every method runs in the same run:

- pca:        scikit-learn PCA to 2-D, the baseline;
- umap:       umap-learn on the full features (default n_neighbors=15, min_dist=0.1);
- pca50+umap: umap-learn on the first 50 principal components (the usual denoise-and-speed-up step);
- pca50+tsne: scikit-learn's Barnes-Hut t-SNE on the first 50 principal components (its documented advice).

Per dataset and method: seconds (warm: numba's compile cost is paid before the clock starts), scikit-learn's
trustworthiness at k=10 (do the map's neighbours exist in the features?), 10-NN kept (share of each image's
10 nearest neighbours in the features that are also among its 10 nearest on the map), and 10-NN label
agreement on the map beside the same figure in the full features (how much the map mixes classes).

Then the product's projection (labeling/ranking/dataset_map.py project: pca50+tsne) at 10,000 points (the
largest dataset's features repeated with a little noise), in a fresh process so first-call costs are counted,
beside pca50+umap on the same points, and drawing the map figure (ui/map_tab.py draw_map) at 10,000 points.
Last line: one JSON object.

    .venv/bin/python bench/map.py [--only digits,icons] [--skip-tsne]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, print_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ranking import embeddings  # noqa: E402
from ranking_data import DATASETS, load  # noqa: E402

from labeling.ranking.dataset_map import METHOD  # noqa: E402
from labeling.ranking.scoring import head_features  # noqa: E402

K = 10
BIG = 10_000


def pca(features: np.ndarray, components: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=min(components, *features.shape), random_state=0).fit_transform(features)


def umap_2d(features: np.ndarray) -> np.ndarray:
    import umap

    return umap.UMAP(n_components=2, random_state=0).fit_transform(features)


def tsne_2d(features: np.ndarray) -> np.ndarray:
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, init="pca", random_state=0).fit_transform(features)


METHODS = {
    "pca": lambda f: pca(f, 2),
    "umap": umap_2d,
    "pca50+umap": lambda f: umap_2d(pca(f, 50)),
    "pca50+tsne": lambda f: tsne_2d(pca(f, 50)),
}


def neighbours(points: np.ndarray, k: int = K) -> np.ndarray:
    """Each row's k nearest other rows (indices), Euclidean."""
    from sklearn.neighbors import NearestNeighbors

    found = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points, return_distance=False)
    return found[:, 1:]


def label_agreement(near: np.ndarray, labels: np.ndarray) -> float:
    """Mean share of each point's neighbours that carry its label."""
    return float((labels[near] == labels[:, None]).mean())


def kept(near_full: np.ndarray, near_map: np.ndarray) -> float:
    """Mean share of each point's nearest neighbours in the features that stay its nearest on the map."""
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(near_full, near_map, strict=True)]))


def measure(features: np.ndarray, labels: np.ndarray, near_full: np.ndarray, method: str) -> dict:
    from sklearn.manifold import trustworthiness

    started = time.perf_counter()
    xy = METHODS[method](features)
    seconds = time.perf_counter() - started
    near_map = neighbours(xy)
    return {
        "seconds": seconds,
        "trustworthiness": float(trustworthiness(features, xy, n_neighbors=K)),
        "knn_kept": kept(near_full, near_map),
        "label_agreement": label_agreement(near_map, labels),
    }


def big_features(features: np.ndarray, n: int = BIG, seed: int = 0) -> np.ndarray:
    """n rows: features repeated, each copy with a little Gaussian noise so no two rows coincide."""
    rng = np.random.default_rng(seed)
    rows = features[np.arange(n) % len(features)]
    return (rows + rng.normal(scale=0.1, size=rows.shape)).astype(np.float32)


COLD_SCRIPT = """
import json, sys, time
started = time.perf_counter()
import numpy as np
sys.path.insert(0, {root!r})
from labeling.ranking.dataset_map import project
features = np.load({path!r})
imported = time.perf_counter()
xy = project(features)
first = time.perf_counter()
project(features)
second = time.perf_counter()
np.save({out!r}, xy)
print(json.dumps({{"import_s": imported - started, "first_s": first - imported, "second_s": second - first}}))
"""


def cold_projection(features: np.ndarray) -> tuple[dict, np.ndarray]:
    """The product's projection of features in a fresh process: seconds to import, for the first call (numba
    compiles) and a second call; and the map it drew."""
    with tempfile.TemporaryDirectory() as temp:
        path, out = Path(temp) / "features.npy", Path(temp) / "xy.npy"
        np.save(path, features)
        result = subprocess.run(
            [sys.executable, "-c", COLD_SCRIPT.format(root=str(ROOT), path=str(path), out=str(out))],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(result.stdout.strip().splitlines()[-1]), np.load(out)


def drawing_seconds(xy: np.ndarray, labels: np.ndarray, repeats: int = 3) -> float:
    """Median seconds to draw the map PNG (ui/map_tab.py draw_map) with a tenth of the points marked."""
    from ui.map_tab import draw_map

    suspects = np.zeros(len(xy), dtype=bool)
    suspects[::10] = True
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        draw_map(xy, [str(label) for label in labels], suspects)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(DATASETS))
    parser.add_argument("--skip-tsne", action="store_true", help="leave t-SNE out (the slowest)")
    args = parser.parse_args()
    methods = [m for m in METHODS if not (args.skip_tsne and "tsne" in m)]
    # numba compiles UMAP's kernels on first use: pay that before any clock starts.
    warm = np.random.default_rng(0).normal(size=(200, 20)).astype(np.float32)
    umap_2d(warm)

    results: dict[tuple[str, str], dict] = {}
    full_agreement = {}
    largest = None
    for dataset in args.only.split(","):
        paths, names = load(dataset)
        labels = np.unique(names, return_inverse=True)[1]
        features = head_features(embeddings(dataset, paths, stages=True))
        near_full = neighbours(features)
        full_agreement[dataset] = label_agreement(near_full, labels)
        for method in methods:
            results[(dataset, method)] = measure(features, labels, near_full, method)
        if largest is None or len(features) > len(largest[0]):
            largest = (features, labels)
        print(f"{dataset}: {len(paths)} images, done", file=sys.stderr, flush=True)

    rows = []
    for (dataset, method), r in results.items():
        rows.append(
            [
                dataset,
                method,
                round(r["seconds"], 2),
                round(r["trustworthiness"], 3),
                round(r["knn_kept"], 3),
                round(r["label_agreement"], 3),
                round(full_agreement[dataset], 3),
            ]
        )
    datasets = list(full_agreement)
    for method in methods:
        means = [np.mean([results[(d, method)][key] for d in datasets]) for key in ("seconds", "trustworthiness")]
        means += [np.mean([results[(d, method)][key] for d in datasets]) for key in ("knn_kept", "label_agreement")]
        rows.append(
            [
                "mean",
                method,
                *(round(float(v), 3) for v in means),
                round(float(np.mean(list(full_agreement.values()))), 3),
            ]
        )
    print_table(
        f"2-D maps of the product's features, k={K}; seconds are warm (numba compiled beforehand)",
        ["dataset", "method", "seconds", "trustworthiness", "10-NN kept", "10-NN label agr. (map)", "(features)"],
        rows,
    )

    features, labels = largest
    big = big_features(features)
    cold, xy = cold_projection(big)
    draw = drawing_seconds(xy, labels[np.arange(BIG) % len(labels)])
    # The runner-up at the same size, warm (numba compiled above); trustworthiness on a 2,000-point sample.
    from sklearn.manifold import trustworthiness

    started = time.perf_counter()
    umap_xy = umap_2d(pca(big, 50))
    umap_big_s = time.perf_counter() - started
    sample = np.random.default_rng(0).choice(BIG, 2000, replace=False)
    reduced = pca(big, 50)[sample]
    big_trust = {
        METHOD: float(trustworthiness(reduced, xy[sample], n_neighbors=K)),
        "pca50+umap": float(trustworthiness(reduced, umap_xy[sample], n_neighbors=K)),
    }
    print_table(
        f"at {BIG:,} points ({big.shape[1]} features): the product's projection ({METHOD}) in a fresh process, "
        "and pca50+umap warm",
        ["method", "imports s", "first call s", "second call s", "trustworthiness (2k sample)", "draw map PNG s"],
        [
            [METHOD, round(cold["import_s"], 2), round(cold["first_s"], 2), round(cold["second_s"], 2),
             round(big_trust[METHOD], 3), round(draw, 2)],
            ["pca50+umap", "", "", round(umap_big_s, 2), round(big_trust["pca50+umap"], 3), ""],
        ],
    )  # fmt: skip

    def mean_of(method: str, key: str) -> float | None:
        if (datasets[0], method) not in results:
            return None
        return round(float(np.mean([results[(d, method)][key] for d in datasets])), 4)

    summary = {
        "datasets": datasets,
        "method": METHOD,
        **{f"{m}_{key}": mean_of(m, key) for m in methods for key in ("trustworthiness", "label_agreement", "seconds")},
        "features_label_agreement": round(float(np.mean(list(full_agreement.values()))), 4),
        "big_n": BIG,
        "big_first_call_s": round(cold["first_s"], 2),
        "big_second_call_s": round(cold["second_s"], 2),
        "big_import_s": round(cold["import_s"], 2),
        "big_trustworthiness": round(big_trust[METHOD], 4),
        "big_umap_seconds": round(umap_big_s, 2),
        "big_umap_trustworthiness": round(big_trust["pca50+umap"], 4),
        "draw_10k_s": round(draw, 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
