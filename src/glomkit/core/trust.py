"""How far a slide's figures can be trusted: the GGS % interval and the slide's quality flags.

* ``ggs_interval``: a 95 % interval for the global glomerulosclerosis % of the tissue a biopsy
  samples. Two uncertainties are in it. (1) Classification: the number of sclerosed glomeruli
  among the n seen is a Poisson-binomial count of the classifier's calibrated P(GGS | glomerulus)
  (a reviewed label is certain: 0 or 1). (2) Sampling: given k of n, the tissue's own share has
  the Jeffreys posterior Beta(k + 1/2, n - k + 1/2) (Brown, Cai & DasGupta 2001). The interval is
  the central 95 % of that mixture. Its coverage is measured on the classifier's out-of-fold
  predictions (``benchmarks/ggs_interval_coverage.py``; docs/models/classifier.md).
* ``quality_flags``: what a pathologist must know before reading the GGS %: too few glomeruli,
  no kidney cortex recognised, a stain the grade was not validated on, calls near the decision,
  detections rejected by a filter that never saw the stain.

Pure numpy on records; imports nothing above ``core``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

INTERVAL_LEVEL = 0.95
# Biopsy adequacy: the Banff classification asks for at least 10 glomeruli (and 2 arteries) for an
# adequate renal biopsy, 7 for a minimal one (Racusen et al., Kidney Int 1999;55:713-723). With
# fewer than 10 glomeruli one sclerosed glomerulus moves the GGS % by more than 10 points.
MIN_GLOMERULI = 10
# No kidney cortex recognised: fewer glomeruli than this, or their mean P(glomerulus) below
# CORTEX_MIN_MEAN_PGLOM, or most detections rejected as non-glomerular.
CORTEX_MIN_GLOMERULI = 3
CORTEX_MIN_MEAN_PGLOM = 0.85
CORTEX_MAX_REJECTED = 0.5
# A call is uncertain when P(glomerulus) < UNCERTAIN_PGLOM (the cut is lower: the detection is
# kept but it might not be a glomerulus) or when P(GGS | glomerulus) lies within
# UNCERTAIN_GGS_MARGIN of the model's GGS threshold.
UNCERTAIN_PGLOM = 0.5
UNCERTAIN_GGS_MARGIN = 0.25
VALIDATED_STAINS = ("PAS",)  # the stains the grade was validated on (bueno_pas, hubmap_pas)
# The stains the non-glomerular filter was trained on (PAS: bueno_pas, hubmap_pas; H&E: cgmh_he).
# On a stain it never saw, its rejections are not to be trusted: trained without H&E, it called
# 16-25 of 49 real H&E glomeruli non-glomerular (classifier card, session 18).
FILTER_STAINS = ("PAS", "H&E")

FLAG_TEXT = {
    "too_few_glomeruli": f"fewer than {MIN_GLOMERULI} glomeruli: the GGS % is not reliable (see its interval)",
    "no_kidney_cortex": "no kidney cortex recognised: too few or doubtful glomeruli, or most detections "
    "rejected as non-glomerular (a lab or stain unlike the training's can cause this: review the "
    "rejected ones); no GGS % is given",
    "stain_not_validated": "the grade was validated on PAS only; on this stain it is not validated",
    "uncertain_calls": "some calls are near the decision: check them first in the review",
    "filter_not_validated": "the non-glomerular filter was trained on PAS and H&E only: on this stain "
    "the detections it rejected may be glomeruli; review them",
}


# the keys ``trust_summary`` adds to summary.json
TRUST_KEYS = (
    "ggs_interval",
    "ggs_interval_level",
    "ggs_interval_kind",
    "ggs_reportable",
    "grade_validated",
    "n_uncertain",
    "mean_p_glomerulus",
    "flags",
    "flag_text",
)


def poisson_binomial_pmf(p: Sequence[float]) -> np.ndarray:
    """P(K = k), k = 0..n, for K the number of successes of independent Bernoulli(p_i)."""
    pmf = np.zeros(len(p) + 1)
    pmf[0] = 1.0
    for i, q in enumerate(np.clip(np.asarray(p, np.float64), 0.0, 1.0)):
        pmf[1 : i + 2] = pmf[1 : i + 2] * (1 - q) + pmf[: i + 1] * q
        pmf[0] *= 1 - q
    return pmf


def _beta_cdfs(a: np.ndarray, b: np.ndarray, points: int = 4001) -> tuple[np.ndarray, np.ndarray]:
    """(x, CDF): the Beta(a_j, b_j) CDFs (points, J) on one grid of x, for a, b >= 1/2.

    With x = sin²(t) the Beta density becomes 2 sin^(2a-1)(t) cos^(2b-1)(t) / B(a, b): bounded and
    smooth for a, b >= 1/2, so a trapezoid rule on a uniform t grid is exact to the grid's
    resolution, each column normalised by its own integral. numpy only (scipy.stats costs 0.75 s
    to import, more than the rest of a run's start-up)."""
    t = np.linspace(0.0, np.pi / 2, points)
    ls = np.log(np.maximum(np.sin(t), 1e-300))[:, None]
    lc = np.log(np.maximum(np.cos(t), 1e-300))[:, None]
    e = (2 * a - 1)[None, :] * ls + (2 * b - 1)[None, :] * lc
    f = np.exp(e - e.max(axis=0, keepdims=True))
    cdf = np.concatenate([np.zeros((1, f.shape[1])), np.cumsum((f[1:] + f[:-1]) / 2, axis=0)])
    return np.sin(t) ** 2, cdf / cdf[-1:]


def ggs_interval(p_ggs: Sequence[float], level: float = INTERVAL_LEVEL) -> tuple[float, float] | None:
    """(low, high) GGS % of the sampled tissue, from each glomerulus's P(GGS) (0/1 when reviewed).

    None when there is no glomerulus. See the module docstring for the model.
    """
    n = len(p_ggs)
    if n == 0:
        return None
    pmf = poisson_binomial_pmf(p_ggs)
    ks = np.flatnonzero(pmf > 1e-12)
    w = pmf[ks] / pmf[ks].sum()
    x, cdfs = _beta_cdfs(ks + 0.5, n - ks + 0.5)
    cdf = cdfs @ w
    a = (1 - level) / 2
    lo = float(np.interp(a, cdf, x))
    hi = float(np.interp(1 - a, cdf, x))
    # At the ends Jeffreys' interval is one-sided (Brown et al. 2001: x = 0 gives a lower bound of
    # 0). In the mixture: where "no glomerulus of the n is sclerosed" is plausible (P(K = 0) at
    # least a) the data cannot exclude 0 %, so the interval starts at 0; likewise 100 % at the top.
    if pmf[0] >= a:
        lo = 0.0
    if pmf[-1] >= a:
        hi = 1.0
    return 100.0 * lo, 100.0 * hi


@dataclass(frozen=True)
class Call:
    """One counted glomerulus's probabilities, as the trust figures need them."""

    p_glomerulus: float  # P(any glomerulus class)
    p_ggs: float  # P(GGS | glomerulus)
    reviewed: bool = False


def call_of(g: Any, scheme: Any, reviewed: bool = False) -> Call | None:
    """One glomerulus record's ``Call`` (None when it is not counted as a glomerulus); a label a
    pathologist checked (``reviewed``) is certain, as is a record without probabilities."""
    if not g.is_glomerulus:
        return None
    probs = g.probs or {}
    pg = sum(float(probs.get(c.name, 0.0)) for c in scheme.classes if c.is_glomerulus)
    if reviewed or not probs or not np.isfinite(pg) or pg <= 0:
        return Call(1.0, 1.0 if g.label in {c.name for c in scheme.classes if c.is_ggs} else 0.0, True)
    pgs = sum(float(probs.get(c.name, 0.0)) for c in scheme.classes if c.is_ggs) / pg
    return Call(pg, float(np.clip(pgs, 0.0, 1.0)))


def calls_of(result: Any, reviewed: bool = False) -> list[Call]:
    """The counted glomeruli of a ``SlideRecord`` (``call_of`` each)."""
    calls = (call_of(g, result.scheme, reviewed) for g in result.glomeruli)
    return [c for c in calls if c is not None]


def uncertain(call: Call, ggs_threshold: float = 0.5) -> bool:
    """True when the call is near the decision (see ``UNCERTAIN_*``); never for a reviewed one."""
    if call.reviewed:
        return False
    return call.p_glomerulus < UNCERTAIN_PGLOM or abs(call.p_ggs - ggs_threshold) < UNCERTAIN_GGS_MARGIN


def record_uncertain(g: Any, result: Any) -> bool:
    """Whether one glomerulus record of ``result`` (a ``SlideRecord``) is an uncertain call, at the
    GGS threshold the run recorded (``result.extra['ggs_threshold']``, default 0.5)."""
    call = call_of(g, result.scheme)
    return call is not None and uncertain(call, float((result.extra or {}).get("ggs_threshold") or 0.5))


def trust_summary(
    calls: list[Call],
    n_detections: int,
    stain: str | None = None,
    ggs_threshold: float = 0.5,
    reviewed: bool = False,
) -> dict[str, Any]:
    """The trust keys of summary.json: ``ggs_interval``, ``flags`` (codes), ``flag_text``,
    ``n_uncertain``, ``grade_validated`` and ``ggs_reportable`` (False: show no GGS %)."""
    n = len(calls)
    interval = ggs_interval([c.p_ggs for c in calls])
    n_unc = sum(uncertain(c, ggs_threshold) for c in calls)
    flags: list[str] = []
    mean_pg = float(np.mean([c.p_glomerulus for c in calls])) if calls else 0.0
    rejected = (n_detections - n) / n_detections if n_detections else 0.0
    no_cortex = not reviewed and (
        n < CORTEX_MIN_GLOMERULI or mean_pg < CORTEX_MIN_MEAN_PGLOM or rejected > CORTEX_MAX_REJECTED
    )
    if no_cortex:
        flags.append("no_kidney_cortex")
    if n < MIN_GLOMERULI:
        flags.append("too_few_glomeruli")
    validated = stain is None or stain in VALIDATED_STAINS
    if not validated:
        flags.append("stain_not_validated")
    if n_unc:
        flags.append("uncertain_calls")
    if not reviewed and stain is not None and stain not in FILTER_STAINS and n_detections > n:
        flags.append("filter_not_validated")
    return {
        "ggs_interval": None if interval is None or no_cortex else [round(v, 2) for v in interval],
        "ggs_interval_level": INTERVAL_LEVEL,
        "ggs_interval_kind": "reviewed labels: sampling only"
        if reviewed
        else "calibrated P(GGS) and sampling",
        "ggs_reportable": not no_cortex and n > 0,
        "grade_validated": validated,
        "n_uncertain": int(n_unc),
        "mean_p_glomerulus": round(mean_pg, 4) if calls else None,
        "flags": flags,
        "flag_text": [FLAG_TEXT[f] for f in flags],
    }


def format_ggs(summary: dict[str, Any]) -> str:
    """The GGS % as a pathologist should read it: '46.2 % (95 % CI 24-69 %)', or why there is none."""
    g = summary.get("ggs_percent")
    if summary.get("ggs_reportable") is False or g is None:
        return (
            "no GGS % ("
            + (FLAG_TEXT["no_kidney_cortex"].split(":")[0] if g is not None else "no glomeruli")
            + ")"
        )
    ci = summary.get("ggs_interval")
    text = f"{g:.1f} %"
    if ci:
        text += f" (95 % interval {ci[0]:.0f}-{ci[1]:.0f} %)"
    if summary.get("grade_validated") is False:
        text += f", not validated on {summary.get('stain', 'this stain')}"
    return text
