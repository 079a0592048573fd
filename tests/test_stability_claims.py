"""Each stability claim against small synthetic tables whose verdict is known."""

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
    return CLAIMS[claim](tables).held


PLATEAU = "most singular values of regular units lie near 1 (plateau)"
IMAGES = "spectra are nearly independent of the image"
DOWN = "down-sampling units differ (little or no plateau)"
SKIP = "scaling the skip by α moves the plateau to α"
INTERP = "interpolating the weights toward noise removes the plateau"
ADV = "adversarial perturbations grow faster than random ones of equal size"
LIN = "the linearization predicts the growth of the propagated perturbation"


def test_plateau_claim():
    flat = [1.0] * 8 + [0.5, 2.0]  # unit 2 of each stage is 1.3 x unit 1: only unit 1 is flat
    rows = pd.DataFrame([_row(f"s0.{u}", "regular", 0, 0, flat) for u in range(3)])
    assert _verdict(PLATEAU, spectra=rows) is True
    assert _verdict(PLATEAU, spectra=_spectra(SPREAD)) is False
    top_k = rows.assign(values=[v[:3] for v in rows["values"]])  # only the top 3 of 10
    assert _verdict(PLATEAU, spectra=top_k) is None


def test_image_independence_claim():
    assert _verdict(IMAGES, spectra=_spectra(SPREAD, wobble=0.0)) is True
    assert _verdict(IMAGES, spectra=_spectra(SPREAD, wobble=1.0)) is False


def test_downsampling_claim():
    flat = [1.0] * 9 + [1.5]
    reg = pd.DataFrame([_row(f"s0.{u}", "regular", 0, 0, flat) for u in range(3)])
    down_flat = _row("s1.0", "downsampling", 1, 0, flat)
    down_spread = _row("s1.0", "downsampling", 1, 0, SPREAD)
    assert _verdict(DOWN, spectra=pd.concat([reg, pd.DataFrame([down_spread])])) is True
    assert _verdict(DOWN, spectra=pd.concat([reg, pd.DataFrame([down_flat])])) is False
    assert _verdict(DOWN, spectra=reg) is None  # no down-sampling unit: nothing to judge


def _skip(positions, values_len=N):
    return pd.DataFrame({"unit": "s0.1", "alpha": [0.0, 0.5, 1.5],
                         "plateau_position": positions, "method": "dense",
                         "values": [[1.0] * values_len] * 3})


def test_skip_claim():
    spectra = _spectra(ON_PLATEAU)
    assert _verdict(SKIP, spectra=spectra, skip=_skip([np.nan, 0.5, 1.51])) is True
    assert _verdict(SKIP, spectra=spectra, skip=_skip([np.nan, 0.5, 1.0])) is False
    assert _verdict(SKIP, spectra=spectra, skip=_skip([np.nan, 0.5, 1.5], values_len=3)) is None


def _interp(shares, values_len=N):
    return pd.DataFrame({"unit": "s0.1", "t": np.linspace(0, 1, len(shares)),
                         "plateau_share": shares, "method": "dense",
                         "values": [[1.0] * values_len] * len(shares)})


def test_interpolation_claim():
    spectra = _spectra(ON_PLATEAU)
    assert _verdict(INTERP, spectra=spectra, interpolation=_interp([0.0, 0.4, 0.8])) is True
    assert _verdict(INTERP, spectra=spectra, interpolation=_interp([0.7, 0.7, 0.8])) is False
    assert _verdict(INTERP, spectra=spectra, interpolation=_interp([0.8])) is None
    assert _verdict(INTERP, spectra=spectra,
                    interpolation=_interp([0.0, 0.8], values_len=2)) is None


def _propagation(adv_norms, rnd_norms, predicted_factor=1.0):
    rows = []
    for kind, norms in (("fgsm", adv_norms), ("random-fgsm", rnd_norms)):
        for k, v in enumerate(norms):
            rows.append({"perturbation": kind, "image": 0, "index": k, "out_norm": v,
                         "growth": 1.2, "predicted_growth": 1.2 * predicted_factor})
    return pd.DataFrame(rows)


def test_adversarial_and_linearization_claims():
    assert _verdict(ADV, propagation=_propagation([1.0, 2.0, 4.0], [1.0, 1.1, 1.2])) is True
    assert _verdict(ADV, propagation=_propagation([1.0, 1.0, 0.9], [1.0, 1.1, 1.2])) is False
    assert _verdict(LIN, propagation=_propagation([1, 1], [1, 1], 1.05)) is True
    assert _verdict(LIN, propagation=_propagation([1, 1], [1, 1], 1.5)) is False


#: What each claim must say of the tables below, and a number its evidence must give: the
#: regular units' plateau share is 0.4 (below the half needed), the spectra are the same for
#: every image, the down-sampling unit has none, the skip-scaled plateaus sit at α, the
#: interpolation's largest share is at t = 1, FGSM grows 2x while random stays, and the
#: linearization predicts the growth exactly.
EXPECTED = {PLATEAU: (False, "0.400"), "spectra are nearly independent of the image": (True, "0.0000"),
            DOWN: (True, "0.000"), SKIP: (True, "α=1.5: 1.500"), INTERP: (True, "t=1: 0.800"),
            ADV: (True, "2.00"), LIN: (True, "0.000")}


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_every_claim_gives_its_numbers(claim):
    tables = {"spectra": _spectra(ON_PLATEAU, down=SPREAD), "skip": _skip([np.nan, 0.5, 1.5]),
              "interpolation": _interp([0.0, 0.8]),
              "propagation": _propagation([1.0, 2.0], [1.0, 1.0])}
    c = CLAIMS[claim](tables)
    held, number = EXPECTED[claim]
    assert c.held is held and number in c.evidence, c.evidence
