"""Numbers of the stability study and the check of paper 000's qualitative claims."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd


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


def _judged(claim: dict[str, object], is_partial: bool) -> dict[str, object]:
    """Mark a claim that needs whole spectra as not judged when only the top k were computed."""
    if is_partial:
        claim["holds"] = None
        claim["evidence"] = ("only the top k values were computed (--k), so shares and plateaus "
                             "describe those alone; run without --k, or with --method slq. "
                             + str(claim["evidence"]))
    return claim


def claims(spectra: pd.DataFrame, prop: pd.DataFrame, skip: pd.DataFrame,
           interp: pd.DataFrame) -> list[dict[str, object]]:
    """Each qualitative claim of paper 000 with the measured numbers and whether it holds here.

    ``holds`` is True, False, or None where the claim needs whole spectra and only the top k
    values were computed.
    """
    sizes = {n: min(a, b) for n, a, b in zip(spectra["name"], spectra["n_in"], spectra["n_out"],
                                             strict=True)}
    top_k = partial(spectra, sizes)
    shares = plateau_shares(spectra)
    reg = shares[shares["kind"] == "regular"]
    down = shares[shares["kind"] == "downsampling"]
    reg_median = float(reg["plateau_share"].median())
    var = image_variation(spectra[spectra["kind"] != "stage"])
    img = float(var["relative"].median())
    unit = unit_to_unit_distance(spectra)
    out = [
        _judged({"claim": "most singular values of regular units lie near 1 (plateau)",
         "holds": reg_median > 0.5,
         "evidence": f"median plateau share over regular units {reg_median:.3f} (> 0.5 needed); "
                     "per stage " + ", ".join(f"{int(s) + 1}: {g['plateau_share'].mean():.3f}"
                                             for s, g in reg.groupby("stage"))}, top_k),
        {"claim": "spectra are nearly independent of the image",
         "holds": bool(img < 0.25 * unit) if np.isfinite(unit) else img < 0.05,
         "evidence": f"median relative image-to-image distance {img:.4f} vs unit-to-unit distance "
                     f"{unit:.4f} within a stage (holds if below a quarter of it); max over units "
                     f"of max |Δσ| {var['max_abs'].max():.4f}"},
    ]
    if len(down):
        worst = float(down["plateau_share"].max())
        out.append(_judged({"claim": "down-sampling units differ (little or no plateau)",
                    "holds": worst < 0.5 * reg_median,
                    "evidence": "plateau share of down-sampling units "
                                + ", ".join(f"{n}: {p:.3f}" for n, p in
                                            zip(down["name"], down["plateau_share"], strict=True))
                                + f" vs regular median {reg_median:.3f} (holds if all below half)"},
                           top_k))
    moved = skip[skip["alpha"] > 0]
    errs = (moved["plateau_position"] - moved["alpha"]).abs()
    out.append(_judged({"claim": "scaling the skip by α moves the plateau to α",
                "holds": bool((errs <= 0.02).all()),
                "evidence": "plateau position per α: " + ", ".join(
                    f"α={a:g}: {p:.3f}" for a, p in zip(moved["alpha"], moved["plateau_position"],
                                                         strict=True))
                            + " (holds if within 0.02 of α)"}, partial(skip, sizes, "unit")))
    by_t = interp.set_index("t")["plateau_share"].sort_index()
    out.append(_judged({"claim": "interpolating the weights toward noise removes the plateau",
                "holds": bool(by_t.iloc[0] < 0.5 * by_t.iloc[-1]),
                "evidence": "plateau share per t: " + ", ".join(f"t={t:g}: {s:.3f}"
                                                               for t, s in by_t.items())
                            + f"; largest at t={by_t.idxmax():g} (paper: t=0.5)"},
                       partial(interp, sizes, "unit")))
    adv, rnd = (prop[prop["perturbation"] == k] for k in ("fgsm", "random-fgsm"))
    final_ratio = (adv.groupby("index")["out_norm"].mean() / rnd.groupby("index")["out_norm"].mean())
    out.append({"claim": "adversarial perturbations grow faster than random ones of equal size",
                "holds": bool(final_ratio.iloc[-1] > 1.0),
                "evidence": f"FGSM/random ratio of propagated magnitude at the last unit "
                            f"{final_ratio.iloc[-1]:.2f}, at the first {final_ratio.iloc[0]:.2f}"})
    rel = (adv["predicted_growth"] / adv["growth"] - 1).abs()
    out.append({"claim": "the linearization predicts the growth of the propagated perturbation",
                "holds": bool(rel.median() < 0.1),
                "evidence": f"median |predicted/actual − 1| over units and images {rel.median():.3f}"
                            f" (FGSM; holds if < 0.1), 90th percentile {rel.quantile(0.9):.3f}"})
    return out


def markdown(model: str, data: str, images: list[int], labels: list[int], spectra: pd.DataFrame,
             prop: pd.DataFrame, skip: pd.DataFrame, interp: pd.DataFrame, eps: float,
             seconds: float, tasks_run: int, tasks_total: int) -> str:
    """summary.md: the study's findings as numbers (``seconds``: this run, which computed
    ``tasks_run`` of the ``tasks_total`` tasks; the others were resumed from the task store)."""
    shares = plateau_shares(spectra)
    adv = prop[prop["perturbation"] == "fgsm"]
    growth = adv.groupby(["index", "unit"])["growth"].mean().reset_index()
    jump = growth.loc[growth["growth"].idxmax()]
    flips = adv.drop_duplicates("image")["attack_flipped"]
    pgd_flips = prop[prop["perturbation"] == "pgd"].drop_duplicates("image")["attack_flipped"]
    lines = [f"# Stability study: {model} on {data}", "",
             f"Images {images} (labels {labels}); FGSM/PGD budget ε = {eps:g} in pixel units. "
             f"This run computed {tasks_run} of {tasks_total} tasks in {seconds:.0f} s"
             + (" (the rest were resumed from tasks/)." if tasks_run < tasks_total else "."), "",
             "## Paper 000's claims on this model", "",
             "| claim | holds here | evidence |", "|---|---|---|"]
    for c in claims(spectra, prop, skip, interp):
        verdict = {True: "yes", False: "no", None: "not judged"}[c["holds"]]
        lines.append(f"| {c['claim']} | {verdict} | {c['evidence']} |")
    lines += ["", "## Numbers", "",
              "Plateau share (0.99 ≤ σ ≤ 1.01) per stage, regular units: "
              + ", ".join(f"stage {int(s) + 1}: {g['plateau_share'].mean():.3f}" for s, g in
                          shares[shares["kind"] == "regular"].groupby("stage")) + ".",
              "",
              "Stage Jacobians, plateau share: " + ", ".join(
                  f"{r['name']}: {r['plateau_share']:.3f}" for _, r in
                  shares[shares["kind"] == "stage"].iterrows()) + ".",
              "",
              f"FGSM flipped the prediction for {int(flips.sum())} of {len(flips)} images; PGD for "
              f"{int(pgd_flips.sum())} of {len(pgd_flips)}.",
              "",
              f"Largest mean FGSM growth ‖δx_out‖/‖δx_in‖: {jump['growth']:.3f} at unit "
              f"{jump['unit']} (#{int(jump['index'])}).",
              "",
              "Skip scaling, plateau position per α: " + ", ".join(
                  f"{a:g} → {p:.3f}" for a, p in zip(skip["alpha"], skip["plateau_position"],
                                                      strict=True)) + ".",
              "",
              "Interpolation, plateau share per t: " + ", ".join(
                  f"{t:g} → {s:.3f}" for t, s in zip(interp["t"], interp["plateau_share"],
                                                      strict=True)) + ".", ""]
    return "\n".join(lines)
