#!/usr/bin/env python
"""Build the opto_nb documentation site into `docs/` (offline), and README.md from `nbs/index.ipynb`.

    python tools/build_docs.py            # execute every notebook, render with outputs and plots, build docs/
    python tools/build_docs.py --fast     # run only exported code, imports and show_doc cells (API reference, no plots)
    python tools/build_docs.py --readme   # only regenerate README.md from nbs/index.ipynb

Pipeline: each notebook is executed in its own process with execnb (the engine behind nbdev-test), then nbdev's
conventions are applied (cells marked `#| hide`, `#| export` and `#| default_exp` are left out of the page,
`#|` directive lines are stripped), the result is converted to Markdown with nbconvert (plots become image files,
`show_doc` output becomes Markdown), and mkdocs-material builds the site with navigation and search.
"""
import argparse, ast, json, os, re, shutil, subprocess, sys, tempfile
import nbformat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"

EXEC_SNIPPET = r"""
import json, sys, os, ast
from pathlib import Path
from fastcore.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
src, dst, fast = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == '1'
nb = read_nb(src)

def directives(cell):
    return {l[3:].strip().split()[0] for l in cell.source.splitlines() if l.startswith('#|') and l[3:].strip()}

def only_imports(cell):
    try: tree = ast.parse(cell.source)
    except SyntaxError: return False
    return bool(tree.body) and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body)

def skip(cell):
    if cell.cell_type != 'code': return True
    if not fast: return False
    d = directives(cell)
    return not ({'export', 'exports', 'exporti'} & d or only_imports(cell) or 'show_doc(' in cell.source)

os.environ.setdefault('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
os.chdir(src.parent)
sh = CaptureShell(src)
sh.run_all(nb, exc_stop=not fast, preproc=skip, cell_timeout=600)
write_nb(nb, dst)
"""

def _title(nb, fallback: str) -> str:
    for c in nb.cells:
        if c.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", c.source, re.M)
            if m: return m.group(1).strip()
    return fallback

def _directives(src: str) -> set:
    return {l[3:].strip().split()[0] for l in src.splitlines() if l.startswith("#|") and l[3:].strip()}

def _doc_cells(nb) -> dict:
    "Apply nbdev's page conventions: drop hidden/exported/default_exp cells, strip directive lines, show_doc as prose."
    cells = []
    for c in nb.cells:
        src = c.source
        if c.cell_type == "code":
            d = _directives(src)
            if d & {"hide", "export", "exports", "exporti", "default_exp"}: continue
            src = "\n".join(l for l in src.splitlines() if not l.startswith("#|")).strip("\n")
            if _is_showdoc_only(src):  # the API reference: its Markdown output becomes a Markdown cell
                md = "\n\n".join(o.get("data", {}).get("text/markdown", "") for o in c.get("outputs", []))
                md = re.sub(r"^\[source\]\([^)]*\)\{target=[^}]*\}\s*$", "", md, flags=re.M)  # no public repo to link
                md = re.sub(r"^(#+ .*)$", lambda m: m.group(1).replace("_", "\\_"), md, flags=re.M)
                if md.strip(): cells.append({"id": c.get("id"), "cell_type": "markdown", "source": md})
                continue
            if "hide_input" in d: src = ""
            c = {**c, "source": src}
            if not src and not c.get("outputs"): continue
        cells.append(c)
    meta = {"language_info": {"name": "python"}, "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": meta, "cells": [_plain_cell(c) for c in cells]}

def _plain_cell(c: dict) -> dict:
    "Keep only the keys nbformat's schema allows (execnb adds timing metadata that strict validators reject)."
    out = {"id": c.get("id") or os.urandom(4).hex(), "cell_type": c["cell_type"], "source": c["source"], "metadata": {}}
    if c["cell_type"] == "code": out.update(outputs=c.get("outputs", []), execution_count=None)
    if "attachments" in c and c["cell_type"] != "code": out["attachments"] = c["attachments"]
    return out

def _is_showdoc_only(src: str) -> bool:
    try: tree = ast.parse(src)
    except SyntaxError: return False
    calls = [n.value for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    return bool(tree.body) and len(calls) == len(tree.body) and all(
        getattr(c.func, "id", None) == "show_doc" for c in calls)

def execute(nb_path: Path, out_dir: Path, fast: bool, env: dict) -> Path:
    dst = out_dir / nb_path.name
    r = subprocess.run([sys.executable, "-c", EXEC_SNIPPET, str(nb_path), str(dst), "1" if fast else "0"],
                       cwd=nb_path.parent, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"executing {nb_path.name} failed:\n{r.stderr[-6000:]}")
    return dst

def to_markdown(nb: dict, name: str, out_dir: Path) -> str:
    "Convert one processed notebook to Markdown; images are written next to it."
    import nbformat
    from nbconvert import MarkdownExporter
    body, res = MarkdownExporter().from_notebook_node(nbformat.from_dict(nb), resources={"output_files_dir": f"{name}_files"})
    for fn, data in res.get("outputs", {}).items():
        p = out_dir / fn; p.parent.mkdir(parents=True, exist_ok=True); p.write_bytes(data)
    return body

def _strip_ansi(s: str) -> str: return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", s)

def build(fast: bool, out: Path, only=None, jobs: int = 2) -> Path:
    nbs = sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith("_"))
    if only: nbs = [p for p in nbs if any(o in p.stem for o in only)]
    if not nbs: raise SystemExit("build_docs: no notebooks matched")
    work = Path(tempfile.mkdtemp(prefix="opto_nb_docs_"))
    exe_dir, src_dir = work / "executed", work / "src"; exe_dir.mkdir(); src_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with ThreadPoolExecutor(jobs) as ex:
        done = list(ex.map(lambda p: execute(p, exe_dir, fast, env), nbs))
    nav = []
    for p in done:
        nb = nbformat.read(p, as_version=4)
        name = "index" if p.stem == "index" else p.stem
        md = _strip_ansi(to_markdown(_doc_cells(nb), name, src_dir))
        (src_dir / f"{name}.md").write_text(md)
        nav.append((_title(nb, p.stem), f"{name}.md"))
    nav.sort(key=lambda t: (t[1] != "index.md", t[1]))
    if (NBS / "images").exists(): shutil.copytree(NBS / "images", src_dir / "images")  # pictures the prose links to
    cfg = {
        "site_name": "opto_nb", "docs_dir": str(src_dir), "site_dir": str(out.resolve()), "use_directory_urls": False,
        "theme": {"name": "material", "features": ["navigation.sections", "search.highlight", "content.code.copy"]},
        "plugins": ["search"],
        "markdown_extensions": ["tables", "fenced_code", "md_in_html", "admonition", "pymdownx.superfences",
                                {"toc": {"permalink": True}}],
        "nav": [{t: f} for t, f in nav],
    }
    import yaml
    (work / "mkdocs.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(work / "mkdocs.yml")],
                       capture_output=True, text=True)
    if r.returncode != 0: raise RuntimeError(f"mkdocs build failed:\n{r.stdout}\n{r.stderr}")
    shutil.rmtree(work)
    return out

def readme(path: Path = ROOT / "README.md") -> Path:
    "Write README.md from nbs/index.ipynb (executed, so its examples show their real output)."
    work = Path(tempfile.mkdtemp(prefix="opto_nb_readme_"))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    exe = execute(NBS / "index.ipynb", work, fast=False, env=env)
    md = _strip_ansi(to_markdown(_doc_cells(nbformat.read(exe, as_version=4)), "README", work))
    if any(work.glob("README_files/*")): raise RuntimeError("index.ipynb must not produce images: README has no asset folder")
    md = md.replace("](images/", "](nbs/images/")  # the README sits one folder above the notebooks
    from opto_nb.utils import atomic_write
    atomic_write(path, md.strip() + "\n", mode="w")
    shutil.rmtree(work)
    return path

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true", help="run only exports, imports and show_doc cells (no plots)")
    ap.add_argument("--readme", action="store_true", help="only regenerate README.md from nbs/index.ipynb")
    ap.add_argument("--out", default=str(ROOT / "docs"), help="site folder (default: docs/)")
    ap.add_argument("--only", nargs="*", help="build only notebooks whose name contains one of these")
    ap.add_argument("--jobs", type=int, default=2, help="notebooks executed in parallel")
    a = ap.parse_args()
    if a.readme: print(f"wrote {readme()}")
    else: print(f"built {build(a.fast, Path(a.out), a.only, a.jobs)}")
