"The docs command builds a browsable site: a page per notebook, the API reference, search."
import json, subprocess, sys
from conftest import ROOT, NBS

def test_docs_site(tmp_path):
    out = tmp_path / "site"
    r = subprocess.run([sys.executable, "tools/build_docs.py", "--fast", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    notebooks = sorted(p.stem for p in NBS.glob("*.ipynb") if not p.name.startswith("_"))
    pages = {p.stem for p in out.glob("*.html")}
    assert set(notebooks) <= pages, f"pages missing for {sorted(set(notebooks) - pages)}"
    utils = (out / "00_utils.html").read_text()
    import opto_nb.utils as u
    for name in u.__all__:
        if not name.startswith("_"): assert name in utils, f"API entry for {name} missing from the utils page"
    index = json.loads((out / "search" / "search_index.json").read_text())
    assert any("ScalarMeanTracker" in d.get("text", "") + d.get("title", "") for d in index["docs"]), "search index lacks the API"
    assert (out / "index.html").exists() and "assets" in {p.name for p in out.iterdir()}
