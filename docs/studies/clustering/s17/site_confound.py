"""How the held-out bueno slides' labels follow the site (no encoder, no clustering).

Prints GS / all per site on the held-out slides, and the ARI against GS / nonGS of the
partition "SESCAM or not", the score a grouping earns by finding the site alone.

    python site_confound.py ../shared/data/bueno_pas/labels.csv
"""

import csv
import sys

from sklearn.metrics import adjusted_rand_score

from glomkit.ssl.pool import bueno_held_out_slides


def main(labels_csv: str) -> None:
    rows = list(csv.DictReader(open(labels_csv, newline="")))
    held = bueno_held_out_slides(sorted({r["source_wsi"] for r in rows}))
    for name, keep in (("held-out", lambda r: r["source_wsi"] in held), ("training", lambda r: r["source_wsi"] not in held)):
        sub = [r for r in rows if keep(r)]
        site = [r["source_wsi"].split("_")[0] for r in sub]
        lab = [r["label"] for r in sub]
        counts = {s: f"{sum(1 for x, y in zip(site, lab) if x == s and y == 'GS')}/{site.count(s)}" for s in sorted(set(site))}
        ari = adjusted_rand_score(lab, [s == "SESCAM" for s in site])
        print(f"{name} slides: {len(sub)} crops; GS / all per site {counts}; ARI of 'SESCAM or not' vs GS: {ari:.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
