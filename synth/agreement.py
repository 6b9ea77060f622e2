"""Pure inter-reviewer agreement: Cohen's kappa per reviewer pair, Fleiss' kappa overall.

Ratings are each reviewer's latest action per task (approve, reject, needs-edit, skip).
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """Cohen's kappa of two raters over the same items; None when undefined."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if expected == 1:
        return 1.0 if observed == 1 else None
    return (observed - expected) / (1 - expected)


def fleiss_kappa(items: list[list[str]]) -> float | None:
    """Fleiss' kappa over items rated by two or more raters (the number may vary per item)."""
    items = [r for r in items if len(r) >= 2]
    if not items:
        return None
    categories = sorted({c for r in items for c in r})
    total = sum(len(r) for r in items)
    p_j = {c: sum(r.count(c) for r in items) / total for c in categories}
    p_i = []
    for r in items:
        n = len(r)
        counts = Counter(r)
        p_i.append((sum(v * v for v in counts.values()) - n) / (n * (n - 1)))
    p_bar = sum(p_i) / len(p_i)
    p_e = sum(v * v for v in p_j.values())
    if p_e == 1:
        return 1.0 if p_bar == 1 else None
    return (p_bar - p_e) / (1 - p_e)


def agreement(ratings: dict[str, dict[str, str]]) -> tuple[list[tuple[str, str, int, float | None]], float | None]:
    """From {task_id: {reviewer: action}}: per pair (a, b, shared tasks, kappa), and Fleiss."""
    reviewers = sorted({r for per in ratings.values() for r in per})
    pairs = []
    for a, b in combinations(reviewers, 2):
        shared = [t for t, per in ratings.items() if a in per and b in per]
        pairs.append((a, b, len(shared), cohen_kappa([ratings[t][a] for t in shared],
                                                     [ratings[t][b] for t in shared])))
    return pairs, fleiss_kappa([list(per.values()) for per in ratings.values()])
