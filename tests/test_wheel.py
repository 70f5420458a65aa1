"""Packaging: the wheel installs in a new virtual environment and works there, away from the repository; the sdist
carries the project's source (the notebooks) and its tests; the metadata has no placeholder URL or e-mail.

The new environment sees the test environment's site-packages (through a `.pth` file, after its own) so that torch and
the other dependencies are not installed a second time; the wheel itself is installed into it with `--no-deps`, and
the test checks that the package it runs is the wheel's copy, that every dependency the wheel declares is present,
and that the console script works.
"""
import re, shutil, site, subprocess, sys, tarfile, venv, zipfile
from pathlib import Path
import pytest
from conftest import ROOT

@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    out, src = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("src") / "opto_nb"
    # build from a copy: setuptools writes its egg-info and release tree into the source folder, which other tests
    # of a parallel run read at the same time
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                             "test-artifacts", "docs", "runs", ".cache", "_proc"))
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out)],
                       cwd=src, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return next(out.glob("*.whl")), next(out.glob("*.tar.gz"))

def test_sdist_has_notebooks_and_tests(dists):
    names = tarfile.open(dists[1]).getnames()
    for wanted in ("nbs/00_utils.ipynb", "nbs/index.ipynb", "tests/test_notebooks.py", "LICENSE", "pyproject.toml"):
        assert any(n.endswith("/" + wanted) for n in names), f"the sdist lacks {wanted}"

def test_metadata_has_no_placeholders(dists):
    meta = zipfile.ZipFile(dists[0]).read(next(n for n in zipfile.ZipFile(dists[0]).namelist()
                                               if n.endswith(".dist-info/METADATA"))).decode()
    assert not re.search(r"\.invalid\b|example\.(com|org)|TODO|FIXME", meta), "placeholder in the wheel's metadata"
    assert "License-Expression: Apache-2.0" in meta or "License: Apache-2.0" in meta
    if "Project-URL: Repository" in meta:        # a package index can show a picture only from an absolute URL
        assert not re.search(r"!\[[^\]]*\]\((?!https?://)", meta), "README pictures must be absolute URLs"

def test_wheel_installs_and_runs(dists, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    own = subprocess.run([py, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True)
    # a .pth line only extends sys.path: the test environment's editable opto_nb (a finder hook) stays inactive
    Path(own.stdout.strip(), "test_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(dists[0])],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    probe = ("import importlib.metadata as md, opto_nb\n"
             "from packaging.requirements import Requirement\n"
             "def has(name):\n"
             "    try: md.version(name); return True\n"
             "    except md.PackageNotFoundError: return False\n"
             "reqs = [Requirement(r) for r in md.requires('opto_nb') or []]\n"
             "missing = [str(q) for q in reqs if q.marker is None and not has(q.name)]\n"
             "print(opto_nb.__file__, opto_nb.__version__, md.version('opto_nb'), missing)\n")
    r = subprocess.run([py, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    where, version, dist_version, missing = r.stdout.split(" ", 3)
    assert Path(where).is_relative_to(env_dir), f"ran {where}, not the wheel's copy"
    assert version == dist_version and missing.strip() == "[]", r.stdout
    r = subprocess.run([env_dir / "bin" / "opto_nb", "--version"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and version in r.stdout, r.stdout + r.stderr
