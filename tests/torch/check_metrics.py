#!/usr/bin/env python3
# tests/torch/check_metrics.py: recomputes the scikit-learn values recorded in tests/test_metrics.cpp
# (quadratic weighted kappa, ROC AUC, Youden's threshold, numpy's percentile) with the installed
# scikit-learn, so the constants fovea is tested against agree with the library users know. Exit 0
# when every value matches, 77 (skip) when sklearn cannot be imported.
import math
import sys
import warnings

try:
    import numpy as np
    import sklearn
    from sklearn.metrics import cohen_kappa_score, roc_auc_score, roc_curve
except ImportError:
    print("check_metrics: scikit-learn not importable, skipping")
    sys.exit(77)

failures = []


def expect(name, got, want, tol=1e-12):
    ok = (math.isnan(got) and math.isnan(want)) or abs(got - want) <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {name}: sklearn {got!r}, fovea test constant {want!r}")
    if not ok:
        failures.append(name)


NAN = float("nan")
KAPPA = [  # tests/test_metrics.cpp kappa_cases()
    ("A", [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 2, 2, 0, 1, 4], [0, 2, 2, 3, 3, 0, 1, 1, 3, 4, 2, 4, 1, 1, 4],
     0.8574821852731591),
    ("B", [1, 3, 0, 1, 1, 1, 4, 3, 4, 4, 0, 0, 4, 0, 0, 0, 4, 1, 1, 0, 2, 2, 4, 3, 4, 0, 2, 2, 3, 0],
     [0, 3, 0, 2, 1, 2, 4, 3, 4, 3, 0, 0, 4, 0, 1, 0, 4, 2, 2, 0, 2, 1, 4, 4, 4, 0, 1, 1, 2, 0], 0.9164345403899722),
    ("C", [2] * 6, [2] * 6, NAN),
    ("D", [0] * 7, [0, 1, 2, 3, 4, 1, 0], 0.0),
    ("E", [0, 1, 4, 4, 1, 0, 0, 4], [0, 4, 4, 1, 1, 0, 1, 4], 0.6082474226804124),
]
for name, y, p, want in KAPPA:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = float(cohen_kappa_score(y, p, labels=list(range(5)), weights="quadratic"))
    expect(f"kappa {name}", got, want)
expect("kappa 3x3 hand", float(cohen_kappa_score([0, 0, 0, 1, 1, 1, 2, 2, 2, 2], [0, 0, 1, 1, 1, 2, 0, 2, 2, 2],
                                                  weights="quadratic")), 13 / 23)

AUC = [  # tests/test_metrics.cpp auc_cases(): labels, scores, AUC, Youden threshold
    ("A", [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75, 0.8),
    ("B", [0, 1, 0, 1, 1, 0, 1, 0], [0.5, 0.5, 0.2, 0.9, 0.5, 0.5, 0.3, 0.1], 0.75, 0.3),
    ("C", [1, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0,
           1, 0, 0, 0, 0],
     [0.4, 0.6, 0.8, 0.4, 0.5, 0.9, 0.9, 0.6, 0.3, 0.6, 0.6, 0.5, 0.4, 0.3, 0.4, 0.5, 0.4, 0.9, 0.3, 0.7,
      0.6, 0.5, 0.5, 0.4, 0.9, 0.7, 0.8, 0.8, 0.9, 0.5, 0.4, 0.6, 0.4, 0.7, 0.5, 0.7, 0.5, 0.7, 0.4, 0.4],
     0.8282967032967032, 0.7),
    ("D", [1, 0, 1, 0], [0.5, 0.5, 0.7, 0.2], 0.875, 0.7),
]
for name, y, s, want, want_thr in AUC:
    expect(f"auc {name}", float(roc_auc_score(y, s)), want)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    expect(f"youden threshold {name}", float(thr[np.argmax(tpr - fpr)]), want_thr)

expect("percentile 25", float(np.percentile([1, 2, 3, 4], 25)), 1.75)
expect("percentile 97.5", float(np.percentile([1, 2, 3, 4], 97.5)), 3.925)

print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}")
if failures:
    print("check_metrics: FAILED:", ", ".join(failures))
    sys.exit(1)
print("check_metrics: all values match")
