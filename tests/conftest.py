import os, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"

def pytest_configure(config):
    # Each xdist worker gets one core's worth of BLAS/torch threads so two workers don't oversubscribe 2 cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")


def console_script() -> list:
    "The `opto_nb` script of this interpreter (else the one on PATH, else its entry point run by this interpreter)."
    exe = Path(sys.executable).with_name("opto_nb")
    if exe.is_file(): return [str(exe)]
    found = shutil.which("opto_nb")
    return [found] if found else [sys.executable, "-c", "import sys; from opto_nb.cli import main; sys.exit(main())"]
