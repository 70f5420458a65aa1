"""The documentation site: a page per notebook, an API entry for every public name, search, links, formulas, offline.

One fast build (`tools/build_docs.py --fast`: no execution, the API reference computed from the package) is shared
by every test here, across pytest-xdist workers; the browser test opens it in Debian's Chromium through playwright.
"""
import ast, functools, http.server, json, re, subprocess, sys, threading
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import build_docs  # noqa: E402

LIB = ROOT / "opto_nb"

def _public_names() -> dict:
    "{module: {name: 'def' | 'value' | 'reexport'}} from each module's `__all__`, read with ast (nothing imported)."
    out = {}
    for py in sorted(LIB.glob("*.py")):
        if py.name.startswith("_"): continue
        tree = ast.parse(py.read_text())
        defs, values, names = set(), set(), []
        for n in tree.body:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): defs.add(n.name)
            targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id == "__all__": names = ast.literal_eval(n.value)
                elif isinstance(t, ast.Name): values.add(t.id)
                elif isinstance(t, ast.Tuple): values.update(e.id for e in t.elts if isinstance(e, ast.Name))
        out[py.stem] = {n: "def" if n in defs else "value" if n in values else "reexport" for n in names}
    return out

@pytest.fixture(scope="session")
def site(tmp_path_factory, request):
    "Build the site once for all workers (a file lock in the session's shared temporary folder)."
    from filelock import FileLock
    shared = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"): shared = shared.parent
    info = shared / "docs_site.json"
    with FileLock(str(shared / "docs_site.lock")):
        if not info.exists():
            out = shared / "docs_site"
            r = subprocess.run([sys.executable, "tools/build_docs.py", "--fast", "--keep-going", "--out", str(out)],
                               cwd=ROOT, capture_output=True, text=True, timeout=600)
            info.write_text(json.dumps(dict(out=str(out), rc=r.returncode, stdout=r.stdout, stderr=r.stderr)))
    res = json.loads(info.read_text())
    if not (Path(res["out"]) / "index.html").exists():
        pytest.fail("the docs build wrote no site:\n" + res["stdout"][-3000:] + res["stderr"][-6000:])
    return res

def test_show_doc_cells():
    "Each show_doc is alone in its cell: Jupyter displays a cell's last value only, so the others render nothing."
    problems = [p for nb in build_docs.notebooks() for p in build_docs.check_show_doc_cells(nb, build_docs.read_nb(nb))]
    if problems: pytest.fail(f"{len(problems)} show_doc cells render nothing:\n" + "\n".join(problems))

def test_api_reference_complete(site):
    "The build passes its own checks: every name in every module's `__all__` has an entry, every show_doc renders."
    if site["rc"] != 0: pytest.fail("the docs build reports problems:\n" + site["stderr"][-12000:])

def test_pages_follow_module_names(site):
    "A page per notebook, named as nbdev names it; `_modidx` links (nbdev's doc links) land on real entries."
    out = Path(site["out"])
    pages = {p.stem for p in out.glob("*.html")}
    wanted = {build_docs.page_stem(p) for p in build_docs.notebooks()}
    assert wanted <= pages, f"pages missing for {sorted(wanted - pages)}"
    from opto_nb._modidx import d
    assert not re.search(r"\.invalid\b|example\.(com|org)", json.dumps(d["settings"])), d["settings"]
    public, broken = _public_names(), []
    for mod, syms in d["syms"].items():
        names = public.get(mod.rsplit(".", 1)[-1], {})
        for sym, (link, _) in syms.items():
            if sym.removeprefix(mod + ".") not in names: continue
            page, anchor = link.split("#")
            html = (out / page).read_text() if (out / page).exists() else ""
            if f'id="{anchor}"' not in html: broken.append(f"{sym} -> {link}")
    if broken: pytest.fail("`_modidx` links with no entry on the site:\n" + "\n".join(broken))

def test_search_index_has_every_public_name(site):
    "Search finds every public name: an API entry (a section titled with the name); constants in the text."
    index = json.loads((Path(site["out"]) / "search" / "search_index.json").read_text())["docs"]
    titles = {re.sub(r"<[^>]+>", "", d["title"]) for d in index}
    text = "\n".join(d["text"] for d in index)
    missing = [f"{mod}.{n}" for mod, names in _public_names().items() for n, kind in names.items()
               if (n not in titles if kind != "value" else n not in text)]
    if missing: pytest.fail(f"{len(missing)} public names the search cannot find:\n" + ", ".join(missing))

def test_offline_and_vendored(site):
    "No page loads anything from another host: no web fonts, no CDN; KaTeX is shipped inside the site."
    out = Path(site["out"])
    assert (out / "assets" / "katex" / "katex.min.js").exists() and list((out / "assets" / "katex" / "fonts").glob("*"))
    remote = re.compile(r'<(?:script|link|img|iframe)[^>]+(?:src|href)="(?:https?:)?//[^"]+"')
    bad = {p.name: remote.findall(p.read_text())[:3] for p in out.glob("*.html") if remote.search(p.read_text())}
    assert not bad, f"pages that load from other hosts: {bad}"

# ---------------------------------------------------------------------------------------------------------------
# the site in a browser

ENTRIES = ["opto_nb.learner.Learner", "opto_nb.buffers.Buffer", "opto_nb.buffers.WeightedBuffer",
           "opto_nb.pipeline.TrainingPipeline", "opto_nb.samplers.ModelSampler", "opto_nb.optimizers.LLMOptimizer",
           "opto_nb.core.Parameter", "opto_nb.rollouts.sample_rollouts", "opto_nb.models.LSTMLM"]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

ENTRY_JS = """id => { const h = document.getElementById(id); if (!h) return null;
  let table = null, sig = null;
  for (let e = h.nextElementSibling; e && !/^H[1-4]$/.test(e.tagName); e = e.nextElementSibling) {
    if (!table) table = e.tagName === 'TABLE' ? e : e.querySelector('table');
    if (!sig && e.classList.contains('api-sig')) sig = e.querySelector('pre'); }
  return {heading: h.tagName, table: table ? [...table.querySelectorAll('th')].map(t => t.textContent.trim()) : null,
          rows: table ? table.querySelectorAll('tbody tr').length : 0,
          sig_overflow: sig ? sig.scrollWidth - sig.clientWidth : null}; }"""

@pytest.fixture
def served(site):
    H = functools.partial(http.server.SimpleHTTPRequestHandler, directory=site["out"])
    H.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()

def _link(fullname: str) -> str:
    "The page and anchor `_modidx` gives a name: the site and nbdev's index agree, or this test fails."
    from opto_nb._modidx import d
    return d["syms"][fullname.rsplit(".", 1)[0]][fullname][0]

def test_site_in_browser(site, served):
    from playwright.sync_api import sync_playwright
    base, outside, problems = served, [], []
    art = ROOT / "test-artifacts"
    art.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})

        def guard(route):   # every request is recorded; none may leave 127.0.0.1
            url = route.request.url
            if url.startswith(base + "/") or url.startswith(("data:", "blob:")): return route.continue_()
            outside.append(url)
            return route.abort()
        ctx.route("**/*", guard)
        page = ctx.new_page()
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

        # API entries: a heading with the name's `_modidx` anchor, a parameter table after it
        for name in ENTRIES:
            link = _link(name)
            page.goto(f"{base}/{link}", wait_until="domcontentloaded")
            info = page.evaluate(ENTRY_JS, link.split("#")[1])
            assert info, f"{name}: no entry at {link}"
            assert info["table"] and info["table"][:3] == ["argument", "type", "default"] and info["rows"], \
                f"{name}: no parameter table at {link}: {info}"

        # a long signature wraps in a narrow column instead of being cut off
        page.set_viewport_size({"width": 480, "height": 900})
        link = _link("opto_nb.optimizers.LLMOptimizer")
        page.goto(f"{base}/{link}", wait_until="domcontentloaded")
        info = page.evaluate(ENTRY_JS, link.split("#")[1])
        assert info["sig_overflow"] == 0, f"LLMOptimizer's signature overflows its column by {info['sig_overflow']}px"
        page.set_viewport_size({"width": 1280, "height": 900})

        # search: the top hit for a class name is its API entry
        page.goto(f"{base}/index.html")
        page.fill("input.md-search__input", "WeightedBuffer")
        # the search index is built in a web worker when the page opens: slow on a busy machine
        page.wait_for_selector(".md-search-result__item a", timeout=90000)
        # the first group is the best page; its first link with a fragment is the best section on it
        top = page.eval_on_selector(".md-search-result__item", "li => [...li.querySelectorAll('a')]"
                                    ".map(a => a.getAttribute('href')).find(h => h.includes('#'))")
        hit = top.split("?")[0] + "#" + top.split("#")[-1]       # without the `?h=` highlight query
        assert hit.endswith(_link("opto_nb.buffers.WeightedBuffer")), f"top search hit for WeightedBuffer: {top}"
        page.keyboard.press("Escape")

        # a name in backticks links to its entry (preferably from another page)
        target = _link("opto_nb.buffers.WeightedBuffer")
        out = Path(site["out"])
        pages = [q.name for q in sorted(out.glob("*.html")) if f'href="{target}"><code>' in q.read_text()]
        same = target.split("#")[0]
        pages = pages or ([same] if 'href="#weightedbuffer"><code>' in (out / same).read_text() else [])
        assert pages, f"no page links `WeightedBuffer` to {target}"
        page.goto(f"{base}/{pages[0]}")
        a = page.locator(f'a[href="{target if pages[0] != same else "#" + target.split("#")[1]}"]').first
        a.scroll_into_view_if_needed()
        a.click()
        page.wait_for_function("() => location.hash === '#weightedbuffer'")
        page.wait_for_load_state("load")                         # the new page is parsed before it is read
        assert page.evaluate("() => !!document.getElementById('weightedbuffer')")
        assert page.url.split("#")[0].endswith(same)
        page.screenshot(path=str(art / "docs.png"))

        # formulas render from the KaTeX shipped with the site
        math_pages = [q.name for q in sorted(out.glob("*.html")) if 'class="arithmatex"' in q.read_text()]
        assert math_pages, "no page has a formula to check"
        page.goto(f"{base}/{math_pages[0]}")
        page.wait_for_selector(".arithmatex .katex", timeout=10000)
        assert page.locator(".arithmatex .katex-error").count() == 0, "a formula failed to render"
        browser.close()
    assert not outside, f"requests left 127.0.0.1: {sorted(set(outside))[:10]}"
    assert not problems, problems
