"""Probe: how resdyn answers bad input, counted right / partly / wrong.

Every case is a ``resdyn`` command line (run in a process of its own, COLUMNS=40) that must be
refused. Right: exit status 2, one line on the terminal starting "error:", no traceback, and the
run folder not created. Partly: refused without a traceback, but in more than one line or
leaving the folder behind. Wrong: a traceback, exit 0 or 1, or a crash.

Usage:
    python benchmarks/bench_bad_input.py [--only WORD] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

R20 = ["--model", "digits-resnet20"]
SMALL = ["--images", "2"]
CASES: list[tuple[str, list[str]]] = [
    # types and ranges of the study options
    ("images not a number", ["spectra", *R20, "--images", "abc"]),
    ("images zero", ["spectra", *R20, "--images", "0"]),
    ("images negative", ["identity", *R20, "--images", "-3"]),
    ("images beyond the data", ["identity", *R20, "--images", "100000"]),
    ("images beyond the maximum", ["identity", *R20, "--images", "1000000000000"]),
    ("stability images 1", ["stability", *R20, "--images", "1"]),
    ("top-k zero", ["spectra", *R20, "--top-k", "0"]),
    ("top-k wider than the units", ["spectra", *R20, "--top-k", "100000"]),
    ("unknown method", ["spectra", *R20, "--method", "qr"]),
    ("unknown unit", ["spectra", *R20, "--units", "stages.9.9"]),
    ("eps zero", ["identity", *R20, "--eps", "0"]),
    ("eps nan", ["identity", *R20, "--eps", "nan"]),
    ("eps not numbers", ["identity", *R20, "--eps", "a,b"]),
    ("stability eps inf", ["stability", *R20, "--eps", "inf"]),
    ("depths huge", ["identity-sweep", "--depths", "1000000000000"]),
    ("depths zero", ["identity-sweep", "--depths", "0,2"]),
    ("depths repeat", ["identity-sweep", "--depths", "2,2"]),
    ("epochs huge", ["identity-sweep", "--epochs", "1000000000000"]),
    ("sweep batch size zero", ["identity-sweep", "--batch-size", "0"]),
    ("sweep lr negative", ["identity-sweep", "--lr", "-1"]),
    ("compare batch size zero", ["stable", "compare", "--batch-size", "0"]),
    ("compare width huge", ["stable", "compare", "--width", "10000000"]),
    ("compare blocks zero", ["stable", "compare", "--blocks", "0"]),
    ("compare unknown data", ["stable", "compare", "--data", "nowhere"]),
    ("compare h zero", ["stable", "compare", "--h", "0"]),
    ("ode h nan", ["stable", "ode", "--h", "nan"]),
    ("ode T/h too many steps", ["stable", "ode", "--h", "1e-9"]),
    ("ode bad matrix", ["stable", "ode", "--K", "1,2;3"]),
    ("ode unknown activation", ["stable", "ode", "--activation", "gelu"]),
    ("stiffness unknown metric", ["stiffness", *R20, "--metrics", "trace"]),
    ("stiffness dense-max huge", ["stiffness", *R20, "--dense-max", "1000000000"]),
    ("stiffness unknown block", ["stiffness", *R20, "--blocks", "nope"]),
    ("dynamics k zero", ["dynamics", *R20, "--k", "0"]),
    ("dynamics family missing file", ["dynamics", *R20, "--family", "/nonexistent/x.safetensors"]),
    ("dynamics family not a checkpoint", ["dynamics", *R20, "--family", "resnet"]),
    # models, data, files
    ("unknown model", ["spectra", "--model", "resnet9000"]),
    ("missing --model", ["spectra"]),
    ("unknown data", ["spectra", *R20, "--data", "imagenet22k"]),
    ("data file missing", ["spectra", *R20, "--data", "/nonexistent.npz"]),
    ("ViT given another image size", ["identity", "--model", "vit(size=16)", *SMALL]),
    ("weights file missing", ["spectra", *R20, "--weights", "/nonexistent.pth"]),
    ("unknown option", ["spectra", *R20, "--imagez", "3"]),
    ("unknown command", ["spectrum", *R20]),
    ("config file missing", ["spectra", *R20, "--config", "/nonexistent.toml"]),
    # run options
    ("unknown executor", ["spectra", *R20, "--executor", "spark"]),
    ("workers zero", ["spectra", *R20, "--workers", "0"]),
    ("workers huge", ["spectra", *R20, "--workers", "100000"]),
    ("scheduler that does not answer", ["spectra", *R20, *SMALL, "--scheduler",
                                        "tcp://127.0.0.1:1"]),
    ("unknown device", ["spectra", *R20, "--device", "tpu"]),
    ("absent GPU", ["spectra", *R20, "--device", "cuda:7"]),
    ("unknown precision", ["spectra", *R20, "--precision", "float16"]),
    ("threads zero", ["--threads", "0", "spectra", *R20]),
    ("out under a file", ["spectra", *R20, "--out", "{file}/run"]),
    ("out in /proc", ["spectra", *R20, *SMALL, "--out", "/proc/self"]),
    # other commands
    ("evaluate ViT of another size", ["evaluate", "--model", "vit(size=16)"]),
    ("check ViT of another size", ["check", "--model", "vit(size=16)", "--input-shape", "1,8,8"]),
    ("units bad input shape", ["units", *R20, "--input-shape", "1,x,8"]),
    ("train out not safetensors", ["train", *R20, "--data", "digits", "--out", "{tmp}/r.pth"]),
    ("train epochs zero", ["train", *R20, "--data", "digits", "--epochs", "0",
                           "--out", "{tmp}/r.safetensors"]),
    ("report of a missing folder", ["report", "/nonexistent"]),
    ("report into /proc", ["report", "{run}", "--out", "/proc/x.html"]),
]


def judge(args: list[str], tmp: Path) -> tuple[str, str]:
    """(verdict, what came) for one command line."""
    out = tmp / "run"
    resdyn = str(Path(sys.executable).with_name("resdyn"))
    if "{run}" in args:  # a real run folder to report on: the ODE examples, a few seconds
        subprocess.run([resdyn, "stable", "ode", "--out", str(tmp / "ode")], check=True,
                       capture_output=True)
    args = [a.replace("{tmp}", str(tmp)).replace("{file}", str(tmp / "a-file"))
            .replace("{run}", str(tmp / "ode")) for a in args]
    if "--out" not in args and args[0] not in ("evaluate", "check", "units", "report", "train",
                                               "--threads"):
        args += ["--out", str(out)]
    if args[0] == "--threads":
        args += ["--out", str(out)]
    env = {**os.environ, "COLUMNS": "40"}
    p = subprocess.run([resdyn, *args], capture_output=True, text=True, env=env, timeout=600,
                       cwd=tmp)
    text = (p.stdout + p.stderr).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    left = out.exists()
    if "Traceback" in text or p.returncode not in (2,):
        return "wrong", f"exit {p.returncode}: {lines[-1] if lines else ''}"
    if len(lines) == 1 and lines[0].startswith("error:") and not left:
        return "right", lines[0]
    return "partly", f"{len(lines)} lines{', folder left' if left else ''}: {lines[0]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the cases whose name holds this word")
    parser.add_argument("--json", type=Path)
    a = parser.parse_args()
    results = []
    for name, args in CASES:
        if a.only not in name:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "a-file").write_text("x")
            verdict, said = judge(args, Path(tmp))
        results.append({"case": name, "verdict": verdict, "said": said})
        print(f"{verdict:6} {name}: {said}", flush=True)
    counts = {v: sum(r["verdict"] == v for r in results) for v in ("right", "partly", "wrong")}
    print(f"\n{len(results)} bad inputs: {counts['right']} right, {counts['partly']} partly, "
          f"{counts['wrong']} wrong")
    if a.json:
        a.json.write_text(json.dumps({"counts": counts, "cases": results}, indent=2))


if __name__ == "__main__":
    main()
