"Run every notebook in `nbs/` as a test, each in its own process, with nbdev's test runner."
import os, subprocess, sys
import pytest
from conftest import ROOT, NBS

NOTEBOOKS = sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith("_"))

RUNNER = """
import sys
from nbdev.test import test_nb
from nbdev.config import get_config
cfg = get_config()
ok, secs = test_nb(sys.argv[1], skip_flags=cfg.tst_flags.split(), basepath=str(cfg.config_path))
print(f"{sys.argv[1]}: {'ok' if ok else 'FAILED'} in {secs:.1f}s")
sys.exit(0 if ok else 1)
"""

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb):
    env = {**os.environ, "IN_TEST": "1", "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "-c", RUNNER, str(nb)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{nb.name} failed:\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}"
