"""The label-free choice across stain views (session 11's rule, session 13's figures).

Reads the ``metrics.csv`` of ``glomkit cluster`` runs (one per stain view) and applies
``glomkit.cluster.study.choose_by_internal_scores`` to all their rows together: the best mean rank
of silhouette, Davies-Bouldin and Calinski-Harabasz; ARI and NMI are read only to report them.

    python choose_across_views.py FEATURE RUN_DIR [RUN_DIR ...]
"""

import csv
import sys
from pathlib import Path

from glomkit.cluster.study import choose_by_internal_scores


def main(feature: str, dirs: list[str]) -> None:
    rows = []
    for d in dirs:
        with open(Path(d) / "metrics.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                if r["feature"] != feature:
                    continue
                row = {k: (v if k in ("feature", "reduction") else float(v)) for k, v in r.items()}
                row["k"] = int(row["k"])
                row["view"] = Path(d).name
                rows.append(row)
    i = choose_by_internal_scores(rows)
    c = rows[i]
    best = max(rows, key=lambda r: r["ari"])
    print(f"{len(rows)} candidates; chosen without labels: {c['view']} / {c['reduction']}, k = {c['k']}: "
          f"ARI {c['ari']:.3f}, NMI {c['nmi']:.3f}, silhouette {c['silhouette']:.3f}, "
          f"Davies-Bouldin {c['davies_bouldin']:.3f}, Calinski-Harabasz {c['calinski_harabasz']:.1f}")
    print(f"best ARI of any candidate (reads the labels, not a valid choice): {best['ari']:.3f} "
          f"({best['view']} / {best['reduction']}, k = {best['k']})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
