"""Each stability claim against small synthetic tables whose verdict is known: held, not held,
undecided (the 95 % interval over images straddles the threshold, or sits on it) or not
judged."""

import numpy as np
import pandas as pd
import pytest

from resdyn.metrics import singular_summary
from resdyn.studies.stability_claims import CLAIMS

N = 10  # width of every synthetic unit


def _row(name, kind, stage, image, values, n=N):
    s = singular_summary(np.asarray(values, dtype=float))
    return {"name": name, "kind": kind, "stage": stage, "image": image, "n_in": n, "n_out": n,
            "method": "dense", "values": sorted(values, reverse=True), "n_above": s.n_above,
            "n_plateau": s.n_plateau, "n_below": s.n_below, "n_zero": s.n_zero}


def _spectra(regular, down=None, images=(0, 1), wobble=0.0):
    """Two stages of two regular units (values ``regular`` shifted per unit), optionally a
    down-sampling unit opening stage 1; image i adds i * wobble to every value."""
    rows = []
    for i in images:
        for s in (0, 1):
            if s == 1 and down is not None:
                rows.append(_row("s1.0", "downsampling", 1, i, [v + i * wobble for v in down]))
            for u in (1, 2):
                vals = [v * (1 + 0.3 * (u - 1)) + i * wobble for v in regular]
                rows.append(_row(f"s{s}.{u}", "regular", s, i, vals))
    return pd.DataFrame(rows)


ON_PLATEAU = [1.0] * 8 + [0.5, 2.0]
SPREAD = list(np.linspace(0.1, 3.0, N))


def _verdict(claim, **tables):
    return CLAIMS[claim](tables).verdict


PLATEAU = "most singular values of regular units lie near 1 (plateau)"
IMAGES = "spectra are nearly independent of the image"
DOWN = "down-sampling units differ (little or no plateau)"
SKIP = "scaling the skip by α moves the plateau to α"
INTERP = "interpolating the weights toward noise removes the plateau"
ADV = "adversarial perturbations grow faster than random ones of equal size"
LIN = "the linearization predicts the growth of the propagated perturbation"


def _flat_units(values_per_image, units=3):
    """``units`` regular units of stage 0, image i with the spectrum ``values_per_image[i]``."""
    return pd.DataFrame([_row(f"s0.{u}", "regular", 0, i, v) for i, v in
                         enumerate(values_per_image) for u in range(units)])


def test_plateau_claim():
    flat = [1.0] * 8 + [0.5, 2.0]  # a plateau share of 0.8 on every image: the interval is 0.8
    assert _verdict(PLATEAU, spectra=_flat_units([flat, flat])) == "yes"
    assert _verdict(PLATEAU, spectra=_spectra(SPREAD)) == "no"
    # one image has no interval: undecided however large its share
    assert _verdict(PLATEAU, spectra=_flat_units([flat])) == "undecided"
    # images disagree: 0.8 on one, 0.2 on the other; resamples of both give 0.2 to 0.8
    few = [1.0] * 2 + [0.5] * 4 + [2.0] * 4
    assert _verdict(PLATEAU, spectra=_flat_units([flat, few])) == "undecided"
    # exactly on the threshold (a share of 0.5 on every image): undecided
    half = [1.0] * 5 + [0.5] * 5
    claim = CLAIMS[PLATEAU]({"spectra": _flat_units([half, half, half])})
    assert claim.verdict == "undecided" and claim.tests[0].interval.value == 0.5
    assert (claim.tests[0].interval.low, claim.tests[0].interval.high) == (0.5, 0.5)
    rows = _flat_units([flat, flat])
    top_k = rows.assign(values=[v[:3] for v in rows["values"]])  # only the top 3 of 10
    assert _verdict(PLATEAU, spectra=top_k) == "not judged"


def test_plateau_claims_number_is_its_evidence_and_resamples_images():
    flat, few = [1.0] * 8 + [0.5, 2.0], [1.0] * 2 + [0.5] * 4 + [2.0] * 4
    claim = CLAIMS[PLATEAU]({"spectra": _flat_units([flat, flat, few])})
    iv = claim.tests[0].interval
    # the median over units of the mean over images: (0.8 + 0.8 + 0.2) / 3; resamples of three
    # images range from all "few" (0.2) to no "few" (0.8)
    assert iv.value == pytest.approx(0.6) and "0.600" in claim.evidence
    assert (iv.low, iv.high, iv.n) == (pytest.approx(0.2), pytest.approx(0.8), 3)


def test_image_independence_claim():
    assert _verdict(IMAGES, spectra=_spectra(SPREAD, wobble=0.0)) == "yes"
    assert _verdict(IMAGES, spectra=_spectra(SPREAD, wobble=1.0)) == "no"
    assert _verdict(IMAGES, spectra=_spectra(SPREAD, images=(0,))) == "not judged"


def test_downsampling_claim():
    flat = [1.0] * 9 + [1.5]
    reg = _flat_units([flat, flat])
    down_flat = [_row("s1.0", "downsampling", 1, i, flat) for i in (0, 1)]
    down_spread = [_row("s1.0", "downsampling", 1, i, SPREAD) for i in (0, 1)]
    assert _verdict(DOWN, spectra=pd.concat([reg, pd.DataFrame(down_spread)])) == "yes"
    assert _verdict(DOWN, spectra=pd.concat([reg, pd.DataFrame(down_flat)])) == "no"
    # the down-sampling unit flat on one image, spread on the other: 0 to 1 of the regular share
    mixed = pd.DataFrame([down_flat[0], down_spread[1]])
    assert _verdict(DOWN, spectra=pd.concat([reg, mixed])) == "undecided"
    assert _verdict(DOWN, spectra=reg) == "not judged"  # no down-sampling unit: nothing to judge


def _skip(positions, values_len=N):
    return pd.DataFrame({"unit": "s0.1", "alpha": [0.0, 0.5, 1.5],
                         "plateau_position": positions, "method": "dense",
                         "values": [[1.0] * values_len] * 3})


def test_skip_claim():
    spectra = _spectra(ON_PLATEAU)
    assert _verdict(SKIP, spectra=spectra, skip=_skip([np.nan, 0.5, 1.51])) == "yes"
    assert _verdict(SKIP, spectra=spectra, skip=_skip([np.nan, 0.5, 1.0])) == "no"
    # one image by the study's design: its number is the point
    assert CLAIMS[SKIP]({"spectra": spectra, "skip": _skip([np.nan, 0.5, 1.51])}).numbers() == \
        "largest |plateau position − α| 0.01 (one image) < 0.02"
    assert _verdict(SKIP, spectra=spectra, skip=_skip([np.nan, 0.5, 1.5], values_len=3)) == \
        "not judged"


def _interp(shares, values_len=N):
    return pd.DataFrame({"unit": "s0.1", "t": np.linspace(0, 1, len(shares)),
                         "plateau_share": shares, "method": "dense",
                         "values": [[1.0] * values_len] * len(shares)})


def test_interpolation_claim():
    spectra = _spectra(ON_PLATEAU)
    assert _verdict(INTERP, spectra=spectra, interpolation=_interp([0.0, 0.4, 0.8])) == "yes"
    assert _verdict(INTERP, spectra=spectra, interpolation=_interp([0.7, 0.7, 0.8])) == "no"
    assert _verdict(INTERP, spectra=spectra, interpolation=_interp([0.4, 0.7, 0.8])) == \
        "undecided"  # exactly half the share at t = 1
    assert _verdict(INTERP, spectra=spectra, interpolation=_interp([0.8])) == "not judged"
    assert _verdict(INTERP, spectra=spectra,
                    interpolation=_interp([0.0, 0.8], values_len=2)) == "not judged"


def _propagation(adv_norms, rnd_norms, predicted_factor=1.0, images=(0, 1)):
    """Image i's norms are ``adv_norms`` / ``rnd_norms`` (or their i-th list when nested)."""
    rows = []
    for i in images:
        for kind, norms in (("fgsm", adv_norms), ("random-fgsm", rnd_norms)):
            norms = norms[i] if isinstance(norms[0], list) else norms
            factor = (predicted_factor[i] if isinstance(predicted_factor, list)
                      else predicted_factor)
            for k, v in enumerate(norms):
                rows.append({"perturbation": kind, "image": i, "index": k, "out_norm": v,
                             "growth": 1.2, "predicted_growth": 1.2 * factor})
    return pd.DataFrame(rows)


def test_adversarial_and_linearization_claims():
    assert _verdict(ADV, propagation=_propagation([1.0, 2.0, 4.0], [1.0, 1.1, 1.2])) == "yes"
    assert _verdict(ADV, propagation=_propagation([1.0, 1.0, 0.9], [1.0, 1.1, 1.2])) == "no"
    # FGSM grows on image 0 (4 vs 1.2) and not on image 1 (0.6 vs 1.2): undecided
    assert _verdict(ADV, propagation=_propagation([[1.0, 4.0], [1.0, 0.6]], [1.0, 1.2])) == \
        "undecided"
    assert _verdict(ADV, propagation=_propagation([1.0, 2.0], [1.0, 1.0], images=(0,))) == \
        "undecided"  # one image: no interval
    assert _verdict(LIN, propagation=_propagation([1, 1], [1, 1], 1.05)) == "yes"
    assert _verdict(LIN, propagation=_propagation([1, 1], [1, 1], 1.5)) == "no"
    assert _verdict(LIN, propagation=_propagation([1, 1], [1, 1], [1.05, 1.5])) == "undecided"


#: What each claim must say of the tables below, and a number its evidence must give: the
#: regular units' plateau share is 0.4 (below the half needed), the spectra are the same for
#: every image, the down-sampling unit has none, the skip-scaled plateaus sit at α, the
#: interpolation's largest share is at t = 1, FGSM grows 2x while random stays, and the
#: linearization predicts the growth exactly.
EXPECTED = {PLATEAU: ("no", "0.400"), "spectra are nearly independent of the image": ("yes", "0.0000"),
            DOWN: ("yes", "0.000"), SKIP: ("yes", "α=1.5: 1.500"), INTERP: ("yes", "t=1: 0.800"),
            ADV: ("yes", "2.00"), LIN: ("yes", "0.000")}


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_every_claim_gives_its_numbers(claim):
    tables = {"spectra": _spectra(ON_PLATEAU, down=SPREAD), "skip": _skip([np.nan, 0.5, 1.5]),
              "interpolation": _interp([0.0, 0.8]),
              "propagation": _propagation([1.0, 2.0], [1.0, 1.0])}
    c = CLAIMS[claim](tables)
    verdict, number = EXPECTED[claim]
    assert c.verdict == verdict and number in c.evidence, c.evidence
    assert c.tests and c.numbers() == "; ".join(t.text() for t in c.tests)
