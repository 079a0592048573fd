"""Paper 000's claims as functions of the stability study's tables, and the numbers behind them.

Each claim function takes (tables, ctx) and returns a :class:`~resdyn.studies.base.Claim`
judged by its numbers' 95 % intervals (:mod:`.intervals`): resampled over the images (the
plateau, down-sampling, adversarial and linearization claims), over the network's units (the
image-independence claim, whose number is a median over units), or the point of a quantity
measured on the first image by design (skip scaling, interpolation); not judged where the
claim needs whole spectra and only the top k values were computed (``--top-k``).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from .base import Claim, Context
from .intervals import Interval, Test, bootstrap, by_unit, evidence_unit


def _pad(values, n: int) -> np.ndarray:
    v = np.zeros(n)
    v[: len(values)] = np.sort(np.asarray(values, dtype=float))[::-1]
    return v


def image_variation(spectra: pd.DataFrame) -> pd.DataFrame:
    """Per unit/stage: distances between the sorted spectra of different images.

    Columns: name, kind, stage, max_abs (max over pairs of max_i |σ_i(a) − σ_i(b)|),
    mean_abs (mean over pairs of mean_i |σ_i(a) − σ_i(b)|), relative (mean_abs / mean σ).
    """
    rows = []
    for name, g in spectra.groupby("name", sort=False):
        n = max(len(v) for v in g["values"])
        specs = [_pad(v, n) for v in g["values"]]
        pairs = list(combinations(specs, 2))
        if not pairs:
            continue
        max_abs = max(float(np.max(np.abs(a - b))) for a, b in pairs)
        mean_abs = float(np.mean([np.mean(np.abs(a - b)) for a, b in pairs]))
        scale = float(np.mean([s.mean() for s in specs])) or 1.0
        rows.append({"name": name, "kind": g["kind"].iloc[0], "stage": int(g["stage"].iloc[0]),
                     "images": len(specs), "max_abs": max_abs, "mean_abs": mean_abs,
                     "relative": mean_abs / scale})
    return pd.DataFrame(rows)


def unit_to_unit_distance(spectra: pd.DataFrame) -> float:
    """Median relative distance between spectra of different regular units of one stage, same image
    — the yardstick against which image-to-image variation is judged."""
    reg = spectra[spectra["kind"] == "regular"]
    out = []
    for _, g in reg.groupby(["image", "stage"]):
        specs = [np.sort(np.asarray(v, dtype=float))[::-1] for v in g["values"]]
        for a, b in combinations(specs, 2):
            if a.size == b.size:
                out.append(np.mean(np.abs(a - b)) / max(0.5 * (a.mean() + b.mean()), 1e-12))
    return float(np.median(out)) if out else float("nan")


def plateau_shares(spectra: pd.DataFrame) -> pd.DataFrame:
    """Mean share of σ on the plateau per unit/stage over images (with its kind and stage)."""
    total = spectra[["n_above", "n_plateau", "n_below", "n_zero"]].sum(axis=1).clip(lower=1)
    s = spectra.assign(plateau_share=spectra["n_plateau"] / total,
                       above_share=spectra["n_above"] / total, zero_share=spectra["n_zero"] / total)
    return (s.groupby(["name", "kind", "stage"], sort=False)[["plateau_share", "above_share",
                                                              "zero_share"]]
            .mean().reset_index())


def partial(table: pd.DataFrame, sizes: dict[str, int], name_column: str = "name") -> bool:
    """Whether any row holds fewer values than its Jacobian has (a top-k run, ``--k``).

    ``sizes``: min(n_in, n_out) per unit or stage name. SLQ rows carry no values but complete
    bin counts (from the density), so they count as complete.
    """
    rows = table[table["method"] != "slq"]
    return any(len(v) < sizes.get(n, 0) for n, v in zip(rows[name_column], rows["values"],
                                                        strict=True))


def _top_k(table: pd.DataFrame, spectra: pd.DataFrame, name_column: str = "name") -> bool:
    sizes = {n: min(a, b) for n, a, b in zip(spectra["name"], spectra["n_in"], spectra["n_out"],
                                             strict=True)}
    return partial(table, sizes, name_column)


def _judged(evidence: str, tests: list[Test], top_k: bool) -> Claim:
    """A claim that needs whole spectra is not judged when only the top k were computed."""
    if top_k:
        return Claim(None, "only the top k values were computed (--top-k), so shares and "
                           "plateaus describe those alone; run without --top-k, or with --method "
                           "slq. " + evidence)
    return Claim.judged(evidence, tests)


def _regular_plateau(spectra: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    shares = plateau_shares(spectra)
    reg = shares[shares["kind"] == "regular"]
    return reg, float(reg["plateau_share"].median())


def _image_shares(spectra: pd.DataFrame, kinds: tuple[str, ...]) -> tuple[np.ndarray, list]:
    """(images, units) plateau shares of the units of ``kinds``, and the units' names."""
    rows = spectra[spectra["kind"].isin(kinds)]
    total = rows[["n_above", "n_plateau", "n_below", "n_zero"]].sum(axis=1).clip(lower=1)
    return by_unit(rows.assign(plateau_share=rows["n_plateau"] / total), "image", "name",
                   "plateau_share")


def _median_of_means(s: np.ndarray) -> np.ndarray:
    """(r, images, units) -> (r,): the median over units of each unit's mean over images."""
    with np.errstate(all="ignore"):
        return np.nanmedian(np.nanmean(s, axis=1), axis=1)


def plateau_claim(tables, ctx=None) -> Claim:
    sp = tables["spectra"]
    reg, median = _regular_plateau(sp)
    x, _ = _image_shares(sp, ("regular",))
    iv, = bootstrap(x, _median_of_means, unit=evidence_unit(ctx))
    return _judged(f"median plateau share over regular units {median:.3f} (> 0.5 needed); per "
                   "stage " + ", ".join(f"{_stage(sp, s)}: {g['plateau_share'].mean():.3f}"
                                       for s, g in reg.groupby("stage")),
                   [Test("median plateau share of regular units", iv, 0.5, "above")],
                   _top_k(sp, sp))


def image_independence_claim(tables, ctx=None) -> Claim:
    sp = tables["spectra"]
    var = image_variation(sp[sp["kind"] != "stage"])
    if var.empty:
        return Claim(None, "needs two images to compare")
    img, unit = float(var["relative"].median()), unit_to_unit_distance(sp)
    # the median is over the network's units: they are what is resampled; the yardstick (a
    # quarter of the unit-to-unit distance) is the fixed threshold
    iv, = bootstrap(var["relative"].to_numpy(float), lambda s: np.median(s, axis=1),
                    unit="units")
    threshold = 0.25 * unit if np.isfinite(unit) else 0.05
    return Claim.judged(
        f"median relative image-to-image distance {img:.4f} vs unit-to-unit distance "
        f"{unit:.4f} within a stage (holds if below a quarter of it); max over units "
        f"of max |Δσ| {var['max_abs'].max():.4f}",
        [Test("median relative image-to-image distance", iv, threshold, "below")])


def downsampling_claim(tables, ctx=None) -> Claim:
    sp = tables["spectra"]
    shares = plateau_shares(sp)
    down = shares[shares["kind"] == "downsampling"]
    if not len(down):
        return Claim(None, "the model has no down-sampling units")
    _, median = _regular_plateau(sp)
    x, names = _image_shares(sp, ("regular", "downsampling"))
    kind = sp.drop_duplicates("name").set_index("name")["kind"]
    is_down = np.array([kind[n] == "downsampling" for n in names])

    def ratio(s: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            m = np.nanmean(s, axis=1)
            return m[:, is_down].max(axis=1) / np.nanmedian(m[:, ~is_down], axis=1)

    iv, = bootstrap(x, ratio, unit=evidence_unit(ctx))
    return _judged("plateau share of down-sampling units "
                   + ", ".join(f"{n}: {p:.3f}" for n, p in zip(down["name"], down["plateau_share"],
                                                               strict=True))
                   + f" vs regular median {median:.3f} (holds if all below half)",
                   [Test("largest down-sampling plateau share / regular median", iv, 0.5,
                         "below")], _top_k(sp, sp))


def skip_claim(tables, ctx=None) -> Claim:
    skip = tables["skip"]
    moved = skip[skip["alpha"] > 0]
    if not len(moved):
        return Claim(None, "no skip scale α > 0 was computed")
    errs = (moved["plateau_position"] - moved["alpha"]).abs()
    worst = Interval.single(float(errs.max()), _one(ctx))
    return _judged("plateau position per α: " + ", ".join(
                       f"α={a:g}: {p:.3f}" for a, p in zip(moved["alpha"], moved["plateau_position"],
                                                            strict=True))
                   + " (holds if within 0.02 of α)",
                   [Test("largest |plateau position − α|", worst, 0.02, "below")],
                   _top_k(skip, tables["spectra"], "unit"))


def interpolation_claim(tables, ctx=None) -> Claim:
    interp = tables["interpolation"]
    by_t = interp.set_index("t")["plateau_share"].sort_index()
    if len(by_t) < 2:
        return Claim(None, "needs at least two interpolation parameters t")
    with np.errstate(all="ignore"):
        ratio = float(np.float64(by_t.iloc[0]) / by_t.iloc[-1])
    return _judged("plateau share per t: " + ", ".join(f"t={t:g}: {s:.3f}" for t, s in by_t.items())
                   + f"; largest at t={by_t.idxmax():g} (paper: t=0.5)",
                   [Test(f"plateau share at t={by_t.index[0]:g} / at t={by_t.index[-1]:g}",
                         Interval.single(ratio, _one(ctx)), 0.5, "below")],
                   _top_k(interp, tables["spectra"], "unit"))


def _one(ctx) -> str:
    return evidence_unit(ctx)[:-1]  # "image" or "sequence"


def adversarial_claim(tables, ctx=None) -> Claim:
    prop = tables["propagation"]
    adv, rnd = (prop[prop["perturbation"] == k] for k in ("fgsm", "random-fgsm"))
    ratio = adv.groupby("index")["out_norm"].mean() / rnd.groupby("index")["out_norm"].mean()
    last = ratio.index[-1]
    per_image = pd.concat([p[p["index"] == last].groupby("image")["out_norm"].mean()
                           for p in (adv, rnd)], axis=1)

    def of_means(s: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return s[..., 0].mean(axis=1) / s[..., 1].mean(axis=1)

    iv, = bootstrap(per_image.to_numpy(float), of_means, unit=evidence_unit(ctx))
    return Claim.judged(
        f"FGSM/random ratio of propagated magnitude at the last unit {ratio.iloc[-1]:.2f}, "
        f"at the first {ratio.iloc[0]:.2f}",
        [Test("FGSM/random ratio at the last unit", iv, 1.0, "above")])


def linearization_claim(tables, ctx=None) -> Claim:
    prop = tables["propagation"]
    adv = prop[prop["perturbation"] == "fgsm"]
    rel = (adv["predicted_growth"] / adv["growth"] - 1).abs()
    x, _ = by_unit(adv.assign(rel=rel), "image", "index", "rel")

    def median(s: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.nanmedian(s.reshape(len(s), -1), axis=1)

    iv, = bootstrap(x, median, unit=evidence_unit(ctx))
    return Claim.judged(
        f"median |predicted/actual − 1| over units and images {rel.median():.3f} (FGSM; "
        f"holds if < 0.1), 90th percentile {rel.quantile(0.9):.3f}",
        [Test("median |predicted/actual growth − 1|", iv, 0.1, "below")])


CLAIMS = {
    "most singular values of regular units lie near 1 (plateau)": plateau_claim,
    "spectra are nearly independent of the image": image_independence_claim,
    "down-sampling units differ (little or no plateau)": downsampling_claim,
    "scaling the skip by α moves the plateau to α": skip_claim,
    "interpolating the weights toward noise removes the plateau": interpolation_claim,
    "adversarial perturbations grow faster than random ones of equal size": adversarial_claim,
    "the linearization predicts the growth of the propagated perturbation": linearization_claim,
}


def _budget(eps: float, ctx: Context) -> str:
    """The attacks' budget in the input's own terms: pixel units, or per token of an embedded
    context (ℓ∞ per coordinate, and the ℓ2 norm that gives one token)."""
    data = ctx.data
    if data is not None and not data.bounded and len(data.input_shape) == 2:
        d = data.input_shape[1]
        return (f"ε = {eps:g} per coordinate of the embedding space (ℓ∞; per token of d = {d}: "
                f"ℓ2 ≤ {eps * d ** 0.5:.3g}, over the context of {data.input_shape[0]} tokens)")
    return f"ε = {eps:g} in pixel units"


def _stage(spectra: pd.DataFrame, stage: int) -> str:
    """A stage's name as the tables write it (``stages.1``), from a unit name of that stage."""
    rows = spectra[(spectra["stage"] == stage) & (spectra["kind"] == "stage")]
    if len(rows):
        return str(rows["name"].iloc[0])
    name = str(spectra[spectra["stage"] == stage]["name"].iloc[0])
    return name.rsplit(".", 1)[0] if "." in name else f"stage{stage}"


def notes(tables, ctx) -> str:
    """The study's numbers, after the claims (markdown)."""
    sp, prop, skip, interp = (tables[n] for n in ("spectra", "propagation", "skip",
                                                  "interpolation"))
    shares = plateau_shares(sp)
    adv = prop[prop["perturbation"] == "fgsm"]
    growth = adv.groupby(["index", "unit"])["growth"].mean().reset_index().dropna()
    largest = (f"Largest mean FGSM growth ‖δx_out‖/‖δx_in‖: "
               f"{growth['growth'].max():.3f} at unit "
               f"{growth.loc[growth['growth'].idxmax(), 'unit']} "
               f"(#{int(growth.loc[growth['growth'].idxmax(), 'index'])})."
               if len(growth) else "FGSM moved no image (the loss gradient is zero at every "
               "image, e.g. a head initialised to zero), so no FGSM growth is defined.")
    flips = adv.drop_duplicates("image")["attack_flipped"]
    pgd_flips = prop[prop["perturbation"] == "pgd"].drop_duplicates("image")["attack_flipped"]
    cfg = ctx.config
    lines = ["## Numbers", "",
             f"Images {ctx.meta['images']} (labels {ctx.meta['labels']}); FGSM/PGD budget "
             f"{_budget(cfg.eps, ctx)}; skip scaling and interpolation on {cfg.unit}.", "",
             "Plateau share (0.99 ≤ σ ≤ 1.01) per stage, regular units: "
             + ", ".join(f"{_stage(sp, s)}: {g['plateau_share'].mean():.3f}" for s, g in
                         shares[shares["kind"] == "regular"].groupby("stage")) + ".", "",
             "Stage Jacobians, plateau share: " + ", ".join(
                 f"{r['name']}: {r['plateau_share']:.3f}" for _, r in
                 shares[shares["kind"] == "stage"].iterrows()) + ".", "",
             f"FGSM flipped the prediction for {int(flips.sum())} of {len(flips)} images; PGD for "
             f"{int(pgd_flips.sum())} of {len(pgd_flips)}.", "",
             largest, "",
             "Skip scaling, plateau position per α: " + ", ".join(
                 f"{a:g} → {p:.3f}" for a, p in zip(skip["alpha"], skip["plateau_position"],
                                                     strict=True)) + ".", "",
             "Interpolation, plateau share per t: " + ", ".join(
                 f"{t:g} → {s:.3f}" for t, s in zip(interp["t"], interp["plateau_share"],
                                                     strict=True)) + ".", ""]
    return "\n".join(lines)
