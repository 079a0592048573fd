"""The notebooks in examples/ run from top to bottom, end in a figure, and are stored clean.

Each notebook runs in a kernel of this interpreter (the one that has resdyn), in a fresh working
directory whose temporary folder (TMPDIR, where the notebooks put their run folders) is inside
it, so nothing is written into the repository or left behind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbclient  # the test extra: pip install -e '.[test]'
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell; each notebook takes well under a minute in all
KERNEL = "resdyn-tests"


def _kernel(tmp: Path) -> KernelManager:
    """A kernel of this interpreter, one thread per BLAS/OpenMP pool, temporary files in ``tmp``.

    The notebooks name the kernel "python3", which could resolve to another Python on this
    machine; a kernelspec of our own pins sys.executable.
    """
    spec = tmp / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "resdyn tests", "language": "python",
        "env": {"TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    }))
    return KernelManager(kernel_name=KERNEL,
                         kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp / "kernels")]))


def _images(cell) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 8, f"expected the example notebooks in {EXAMPLES}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_ends_in_a_figure(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    work = tmp_path / "work"
    work.mkdir()
    client = nbclient.NotebookClient(nb, km=_kernel(tmp_path), timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError with the cell and its traceback on an error
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert _images(code[-1]), f"{path.name}: the last code cell shows no figure (image/png)"
    written = sorted(p.name for p in work.iterdir())
    assert not written, f"{path.name} wrote into its working directory (the repository's examples/ " \
                        f"when run in Jupyter): {written}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.outputs or c.execution_count is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} hold outputs or execution counts; clear "
                       f"them before committing (jupyter nbconvert --clear-output --inplace {path.name})")
