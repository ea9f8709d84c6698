"""The out-of-scope statistic: how far a film's pooled features lie from the training films'.

Whitened PCA of the trained model's pooled 1280-d features on the training films, one mean per
class in that space, and the score ``min_c mean_j (z_j - m_cj)^2`` (a tied-covariance Mahalanobis
distance, about 1 for a typical training film; see ``runtime._contract``). The projection goes
into the exported graph as a third output, so the runtime only squares and sums ``k`` numbers.

The threshold is chosen against sources held out of the fit, not against the pool alone: for each
source whose classes the other sources also hold and whose age group they hold at least as many
films of (another hospital, not another population), the statistic is refitted without it and
that source's films are scored; the threshold keeps 99 % of the worst such source in scope, and at
least 99.9 % of the validation films. A film from a hospital the fit never saw is the hard case, and
this is the rule that measures it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

HELD_OUT_QUANTILE = 0.99  # of the worst held-out source's scores: that source keeps 99 % in scope
POOL_QUANTILE = 0.999  # of the validation films' scores, full fit: a floor (target: <= 1 % out per source)
MIN_SOURCE_FILMS = 50
# Every PCA direction counts (the top 64 alone let photos through: 0 % out of scope), but a direction's
# variance is floored at this share of the largest, so int8 noise in near-constant directions of the
# training films cannot dominate the score. Measured on the bundled model's pooled features, threshold at
# the validation films' 99.9 % quantile: scikit-image photos out 0 % (top 64), 92 % (all, no floor),
# 62 % (all, this floor); the validation films 0.2 % in every case.
VARIANCE_FLOOR = 1e-3


@dataclass
class ScopeStatistic:
    mean: np.ndarray  # (1280,)
    projection: np.ndarray  # (1280, k): eigenvectors over sqrt(eigenvalues)
    class_means: np.ndarray  # (C, k), in whitened space
    metadata: dict  # what goes into ModelMetadata.scope


def _fit(features: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    mean = features.mean(axis=0)
    centred = features - mean
    cov = centred.T @ centred / max(1, len(features) - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    top = np.argsort(eigenvalues)[::-1][:k]
    floor = VARIANCE_FLOOR * float(eigenvalues.max())
    projection = eigenvectors[:, top] / np.sqrt(np.maximum(eigenvalues[top], 0) + floor)
    z = centred @ projection
    return mean, projection, {int(c): z[y == c].mean(axis=0) for c in np.unique(y)}


def _population_kind(population: str) -> str:
    """'adult(RSNA)' and 'adult-or-unknown' are adults: the age group, not the source's spelling of it."""
    population = population.lower()
    return "pediatric" if population.startswith("pediatric") else "adult" if population.startswith("adult") else ""


def scope_scores(features: np.ndarray, mean: np.ndarray, projection: np.ndarray, class_means) -> np.ndarray:
    """The score of each film (the runtime computes the same from the model's ``scope`` output)."""
    z = (features - mean) @ projection
    means = np.stack(list(class_means.values()) if isinstance(class_means, dict) else class_means)
    return np.min(((z[:, None, :] - means[None]) ** 2).mean(axis=2), axis=1)


def fit_scope(pooled: np.ndarray, data, idx: dict, k: int, log: Callable[[str], None]) -> ScopeStatistic:
    """Fit on the training films, choose the threshold against held-out sources (module docstring)."""
    train = idx["train"]
    y, sources = data.y, data.sources
    populations = np.array([_population_kind(img.population) for img in data.images])
    mean, projection, class_means = _fit(pooled[train], y[train], k)
    val_scores = scope_scores(pooled[idx["val"]], mean, projection, class_means)
    pool_floor = float(np.quantile(val_scores, POOL_QUANTILE))

    held_out = {}
    for source in sorted(set(sources.tolist())):
        in_source = sources == source
        fit_films = train[~in_source[train]]
        classes_left = set(y[fit_films].tolist())
        # Another hospital, not another population: the rest of the pool must hold at least as many
        # films of each of the source's age groups as the source itself.
        population_kept = all((populations[~in_source] == p).sum() >= (populations[in_source] == p).sum()
                              for p in set(populations[in_source].tolist()))
        if (in_source.sum() < MIN_SOURCE_FILMS or not set(y[in_source].tolist()) <= classes_left
                or not population_kept):
            # The only source of a class or of a population (all the children): holding it out
            # measures a population the model was never meant to see, not another hospital.
            continue
        s_mean, s_projection, s_means = _fit(pooled[fit_films], y[fit_films], k)
        scores = scope_scores(pooled[in_source], s_mean, s_projection, s_means)
        held_out[source] = {"n": int(in_source.sum()), "q50": float(np.median(scores)),
                            "q99": float(np.quantile(scores, HELD_OUT_QUANTILE)),
                            "max": float(scores.max())}
    threshold = max([pool_floor] + [v["q99"] for v in held_out.values()])
    all_scores = scope_scores(pooled, mean, projection, class_means)
    in_scope = {source: float((all_scores[sources == source] <= threshold).mean())
                for source in sorted(set(sources.tolist()))}
    rule = (
        f"threshold {threshold:.3f}: the largest of the validation films' {POOL_QUANTILE:.1%} quantile "
        f"({pool_floor:.3f}) and, for each source held out of the fit whose classes and age group the rest of "
        f"the pool also holds ({', '.join(held_out) or 'none eligible'}), the {HELD_OUT_QUANTILE:.0%} quantile of its "
        "films' scores under a fit without it"
    )
    log(f"scope: {rule}; in scope under the full fit: "
        + ", ".join(f"{s} {v:.3f}" for s, v in in_scope.items()))
    metadata = {
        "method": "mahalanobis-tied-pca",
        "features": int(k),
        "class_means": [class_means[c].astype(float).round(6).tolist() for c in sorted(class_means)],
        "threshold": round(threshold, 6),
        "threshold_rule": rule,
        "fitted_on": f"pooled features of {train.size} training films",
        "calibration": {"validation_quantile": pool_floor, "held_out_sources": held_out,
                        "in_scope_rate_by_source": in_scope},
    }
    return ScopeStatistic(mean, projection, np.stack([class_means[c] for c in sorted(class_means)]), metadata)
