"""The spectra study table and its Parquet writer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from resdyn import capture, load_model, stages, units
from resdyn.operators import stage_jacobian, unit_jacobian
from resdyn.spectra import singular_values
from resdyn.studies.spectra import (
    read_spectra,
    spectra_table,
    spectrum_row,
    spectrum_task,
    write_spectra,
)

pytestmark = pytest.mark.usefixtures("single_thread")
COLUMNS = ["model", "image", "label", "name", "stage", "kind", "n_in", "n_out", "method",
           "values", "n_above", "n_plateau", "n_below", "n_zero", "converged", "seconds"]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = load_model("cifar-resnet20", in_channels=1)
    us = units(model, (1, 8, 8))
    x = torch.randn(2, 1, 8, 8)
    return model, us, x


@pytest.fixture(scope="module")
def table(setup):
    model, us, x = setup
    calls = []
    df = spectra_table(model, x, [3, 7], us, names=["stages.1.0", "stages.2.1", "stages.2"],
                       stages=True, model_name="r20", progress=lambda *a: calls.append(a))
    return df, calls


def test_rows_and_columns(table):
    df, calls = table
    assert set(COLUMNS) <= set(df.columns)
    assert len(df) == 2 * 3
    assert df.image.tolist() == [0, 0, 0, 1, 1, 1] and df.label.tolist() == [3, 3, 3, 7, 7, 7]
    assert df.kind.tolist()[:3] == ["downsampling", "regular", "stage"]
    assert df.name.tolist()[:3] == ["stages.1.0", "stages.2.1", "stages.2"]
    assert (df.model == "r20").all() and (df.method == "dense").all() and df.converged.all()
    assert [c[:2] for c in calls] == [(i, 6) for i in range(1, 7)]
    assert all(isinstance(c[2], str) for c in calls)


def test_values_and_bins_are_consistent(table):
    df, _ = table
    for row in df.itertuples():
        v = np.asarray(row.values)
        assert len(v) == min(row.n_in, row.n_out) and np.all(np.diff(v) <= 0)
        assert row.n_above + row.n_plateau + row.n_below + row.n_zero == len(v)
        assert row.n_above == int((v > 1.01).sum())
        assert row.n_zero >= row.structural_zeros


def test_rows_match_direct_computation(setup, table):
    model, us, x = setup
    df, _ = table
    acts = capture(model, x, us)
    u = next(u for u in us if u.name == "stages.2.1")
    direct = singular_values(unit_jacobian(u, acts.inputs[u.name][1]), method="dense").values
    got = df[(df.image == 1) & (df.name == "stages.2.1")]["values"].iloc[0]
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-13)
    st = stages(us)[2]
    direct = singular_values(stage_jacobian(st, acts.inputs[st[0].name][0])).values
    got = df[(df.image == 0) & (df.name == "stages.2")]["values"].iloc[0]
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-13)


def test_unknown_names_are_listed(setup):
    model, us, x = setup
    with pytest.raises(ValueError, match="unknown unit name.*valid: stages.0.0"):
        spectra_table(model, x, None, us, names=["layer9"])
    with pytest.raises(ValueError, match="labels"):
        spectra_table(model, x, [1], us)


def test_top_k_and_slq_rows(setup):
    model, us, x = setup
    acts = capture(model, x[:1], us)
    u = us[2]
    top = spectrum_row(u, acts.inputs[u.name][0], method="arpack", k=5)
    full = spectrum_row(u, acts.inputs[u.name][0], method="dense")
    assert top["method"] == "arpack" and len(top["values"]) == 5
    np.testing.assert_allclose(top["values"], full["values"][:5], rtol=1e-8)
    slq = spectrum_row(u, acts.inputs[u.name][0], method="slq")
    assert slq["values"] == [] and slq["method"] == "slq"
    assert slq["n_above"] + slq["n_plateau"] + slq["n_below"] + slq["n_zero"] == 1024
    # the estimated zero count is at least the exact ReLU-killed rows
    assert slq["n_zero"] >= slq["structural_zeros"] > 0


def test_spectrum_task_is_a_one_row_table(setup):
    model, us, x = setup
    acts = capture(model, x[:1], us)
    one = spectrum_task([us[3]], acts.inputs[us[3].name][0], model_name="m", image=4, label=2)
    assert len(one) == 1 and one.kind.iloc[0] == "downsampling" and one.image.iloc[0] == 4
    st = stages(us)[1]
    row = spectrum_task(st, acts.inputs[st[0].name][0])
    assert row.kind.iloc[0] == "stage" and row.name.iloc[0] == "stages.1"


def test_writer_appends_atomically(table, tmp_path):
    df, _ = table
    path = write_spectra(df.iloc[:2], tmp_path / "out")
    write_spectra(df.iloc[2:], tmp_path / "out")
    assert path == tmp_path / "out" / "spectra.parquet"
    back = read_spectra(tmp_path / "out")
    assert len(back) == len(df)
    pd.testing.assert_frame_equal(back.drop(columns="values"),
                                  df.drop(columns="values").reset_index(drop=True))
    for a, b in zip(back["values"], df["values"], strict=True):
        assert a == b  # float64 round trip is exact
    leftovers = [p.name for p in (tmp_path / "out").iterdir()]
    assert sorted(leftovers) == ["spectra.parquet", "spectra.parquet.lock"]
