"Repository hygiene: notebooks are clean and the exported package is in sync with them."
import filecmp, shutil, subprocess
from pathlib import Path
import pytest
from conftest import ROOT

def _copy_project(dst: Path):
    for name in ("nbs", "opto_nb"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    (dst / "README.md").write_text("")

def _diff(a: Path, b: Path):
    "Files that differ or exist on one side only, relative paths."
    out = []
    for p in sorted(set(q.relative_to(a) for q in a.rglob("*") if q.is_file()) |
                    set(q.relative_to(b) for q in b.rglob("*") if q.is_file())):
        if "__pycache__" in p.parts: continue
        pa, pb = a / p, b / p
        if not (pa.exists() and pb.exists() and filecmp.cmp(pa, pb, shallow=False)): out.append(str(p))
    return out

@pytest.mark.parametrize("cmd,folder,fix", [
    ("nbdev-clean", "nbs", "run `nbdev-clean` and commit the cleaned notebooks"),
    ("nbdev-export", "opto_nb", "run `nbdev-export` and commit the regenerated package"),
])
def test_in_sync(tmp_path, cmd, folder, fix):
    _copy_project(tmp_path)
    subprocess.run([cmd], cwd=tmp_path, check=True, capture_output=True)
    changed = _diff(ROOT / folder, tmp_path / folder)
    assert not changed, f"`{cmd}` changes {changed}: {fix}"

def test_readme_from_index(tmp_path):
    "README.md is generated from nbs/index.ipynb; a stale README misleads newcomers and CI alike."
    import sys
    r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'tools'); import build_docs, pathlib;"
                        f" build_docs.readme(pathlib.Path({str(tmp_path / 'README.md')!r}))"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (tmp_path / "README.md").read_text() == (ROOT / "README.md").read_text(), \
        "README.md is stale: run `python tools/build_docs.py --readme` and commit it"
