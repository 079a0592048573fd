"""How far each block is from the identity, per image: the task of the identity study (paper
002), which the depth sweep plans for each of its networks."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from .._torch import eval_mode
from ..capture import capture
from ..models import stage_name, stages
from ..runs import ModelRef, Task, current

CHUNK = 64  # images per task: one forward pass each


def perturbation_task(model: ModelRef, input_shape: tuple[int, ...], x: torch.Tensor,
                      images: list[int], labels: list[int], blocks: int | None = None,
                      ) -> pd.DataFrame:
    """Absolute and scaled perturbation of every block for a batch of images.

    Args:
        model: by reference; input_shape: its (C, H, W).
        x: (B, C, H, W) images; images, labels: their indices and labels (B each).
        blocks: written to the rows as the network's blocks per section (the sweep's L).

    Returns:
        one row per (image, block): section, position, n_blocks (blocks in its section),
        pos_scaled = position / (n_blocks − 1) (0 for a one-block section), name, kind,
        shortcut ("identity" or "projection"), abs, scaled.
    """
    net, unit_list = model.load(), model.units(input_shape)
    acts = capture(net, current().put(x), unit_list)
    rows = []
    with eval_mode(net), torch.no_grad():
        for group in stages(unit_list):
            for u in group:
                x_in, x_out = acts.inputs[u.name], acts.outputs[u.name]
                if u.parts is not None:
                    base = u.parts.shortcut(x_in)
                elif x_in.shape == x_out.shape:
                    base = x_in
                else:
                    raise ValueError(f"unit {u.name!r} changes the shape and its shortcut is "
                                     "unknown, so its perturbation from identity is undefined")
                shortcut = "identity" if base.shape == x_in.shape and torch.equal(base, x_in) \
                    else "projection"
                base = base.double().flatten(1)
                diff = x_out.double().flatten(1) - base
                absolute = diff.norm(dim=1)
                scaled = absolute / base.norm(dim=1)
                n = len(group)
                for j, image in enumerate(images):
                    rows.append({"image": image, "label": labels[j], "section": stage_name(group),
                                 "section_index": u.stage, "position": u.position, "n_blocks": n,
                                 "pos_scaled": u.position / (n - 1) if n > 1 else 0.0,
                                 "name": u.name, "kind": u.kind, "shortcut": shortcut,
                                 "abs": float(absolute[j]), "scaled": float(scaled[j])})
    out = pd.DataFrame(rows)
    if blocks is not None:
        out.insert(0, "blocks", blocks)
    return out


def perturbation_tasks(ref: ModelRef, data, images: Sequence[int], key: str = "",
                       blocks: int | None = None, after: tuple[str, ...] = ()) -> list[Task]:
    """The tasks of one network's ``blocks`` table: one per chunk of CHUNK images."""
    tasks = []
    for start in range(0, len(images), CHUNK):
        chunk = [int(i) for i in images[start:start + CHUNK]]
        idx = torch.tensor(chunk)
        tasks.append(Task("blocks", f"{key}img{chunk[0]}-n{len(chunk)}", perturbation_task,
                          dict(model=ref, input_shape=data.input_shape, x=data.x[idx].clone(),
                               images=chunk, labels=[int(v) for v in data.y[idx]], blocks=blocks),
                          after=after))
    return tasks
