"""Code style the project holds itself to, checked with ruff (configured in pyproject.toml): lines of at most 120
characters, no `;` statement chains, no unused imports or names, none of pyflakes' bugs — in the notebooks (the
source), the tools, the benchmarks and the tests. The generated modules are checked too, except for line length:
nbdev writes the module docstring and `__all__` on long lines of its own."""
import shutil, subprocess
import pytest
from conftest import ROOT

def test_ruff():
    ruff = shutil.which("ruff") or pytest.fail("ruff is missing: `pip install -e '.[dev]'` installs it")
    r = subprocess.run([ruff, "check", "--output-format", "concise", "nbs", "opto_nb", "tools", "benchmarks", "tests"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"ruff finds style problems (fix them, or `ruff check --fix` for the simple ones):\n" \
                              f"{r.stdout[-8000:]}{r.stderr[-2000:]}"
