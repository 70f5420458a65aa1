#!/usr/bin/env python
"""Build the opto_nb documentation site into `docs/` (offline), and README.md from `nbs/index.ipynb`.

    python tools/build_docs.py               # execute every notebook at its documented size, build docs/
    python tools/build_docs.py --fast        # no execution: the API reference and the outputs stored in the notebooks
    python tools/build_docs.py --readme      # only regenerate README.md from nbs/index.ipynb
    python tools/build_docs.py --only buffers samplers --fast --out /tmp/site   # a few pages, for a quick look

How a page is made. Every notebook in `nbs/` becomes one page, named as nbdev names it (`nbs/22_buffers.ipynb` ->
`buffers.html`, the name `opto_nb/_modidx.py` links to). The notebook is executed in its own process with execnb
(the engine behind nbdev-test, without `IN_TEST`, so tutorials show their real runs); nbdev's conventions are then
applied (`#| hide`, `#| export`, `#| exporti`, `#| default_exp` and `#| include: false` cells are left out,
`#| echo: false` hides a cell's code, `#| output: false` its outputs); each `show_doc(...)` cell becomes an API
entry; names in backticks become links to their entries on any page; nbconvert turns the result into Markdown and
mkdocs-material builds the site with navigation, search and formulas (KaTeX, copied into the site).

The API entries are computed from the installed package itself, in one process: each `show_doc` cell's call is
evaluated with the notebook's module and import cells in scope. An entry shows the signature (wrapped, one
argument per line when long), the docstring, a table of arguments (types, defaults and fastcore `docments`
comments) and links to the source: the notebook and the exported module, in the repository when pyproject's
`[project.urls] Repository` names one, else in copies shipped with the site. The build fails, naming notebook and
cell, when a cell holds more than one `show_doc` or a `show_doc` that is not alone in its cell (Jupyter displays
only a cell's last value), and when a name in a module's `__all__` has no entry on the site.

Nothing on the site asks for anything outside it: no web fonts, no scripts from elsewhere, no analytics.
"""
from __future__ import annotations

import argparse, ast, html, importlib, inspect, json, os, re, shutil, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
KATEX_VERSION = "0.19.1"
KATEX_HELP = (f"KaTeX not found: `apt-get install libjs-katex` (as tools/install-test-deps.sh does), or "
              f"`npm pack katex@{KATEX_VERSION}` unpacked into .cache/katex, or point OPTO_NB_KATEX at a folder "
              "holding katex.min.js, katex.min.css, fonts/ and contrib/auto-render(.min).js")
HIDDEN = {"hide", "export", "exporti", "default_exp"}   # nbdev leaves these cells out of the page
DECADES = {0: "Foundations", 1: "Programs family", 2: "Generative family", 3: "Orchestration and views",
           4: "Application", 9: "Tutorials"}

# ---------------------------------------------------------------------------------------------------------------
# settings and notebooks

def settings() -> dict:
    "The one place for names and URLs: pyproject.toml, read through nbdev (so `_modidx` and the site agree)."
    from nbdev.config import get_config
    cfg = get_config(ROOT)
    return dict(lib=cfg.lib_path.name, git_url=(cfg.git_url or "").rstrip("/"), branch=cfg.branch or "main",
                title=cfg.title or cfg.lib_name, description=cfg.description)

def page_stem(nb_path) -> str:
    "The page a notebook becomes, as nbdev names it: `22_buffers.ipynb` -> `buffers`."
    from nbdev.config import nbpath2html
    return nbpath2html(Path(nb_path).name).stem

def notebooks(only=None) -> list:
    nbs = sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith(("_", ".")))
    if only: nbs = [p for p in nbs if any(o in p.stem for o in only)]
    if not nbs: raise SystemExit("build_docs: no notebooks matched")
    return nbs

def read_nb(path: Path):
    import nbformat
    return nbformat.read(path, as_version=4)

def directives(src: str) -> dict:
    "nbdev directives of a cell: `#| hide` -> {'hide': ''}, `#| eval: false` -> {'eval': 'false'}."
    out = {}
    for line in src.splitlines():
        if not line.startswith("#|"): continue
        m = re.match(r"#\|\s*([\w-]+)\s*:?\s*(.*)$", line)
        if m: out[m.group(1)] = m.group(2).strip()
    return out

def strip_directives(src: str) -> str:
    return "\n".join(l for l in src.splitlines() if not l.startswith("#|")).strip("\n")

def default_exp(nb) -> str | None:
    for c in nb.cells:
        if c.cell_type == "code" and "default_exp" in (d := directives(c.source)): return d["default_exp"].split()[0]
    return None

def title_of(nb, fallback: str) -> str:
    for c in nb.cells:
        if c.cell_type == "markdown" and (m := re.search(r"^#\s+(.+)$", c.source, re.M)):
            return m.group(1).replace("`", "").strip()
    return fallback

def _parse(src: str):
    try: return ast.parse(strip_directives(src))
    except SyntaxError: return None

def _show_doc_calls(tree) -> list:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "show_doc"]

def is_show_doc_cell(cell) -> bool:
    "A cell that is exactly one `show_doc(...)` expression (comments and directives aside)."
    tree = _parse(cell.source) if cell.cell_type == "code" else None
    return bool(tree and len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)
                and isinstance(tree.body[0].value, ast.Call)
                and getattr(tree.body[0].value.func, "id", None) == "show_doc")

def check_show_doc_cells(nb_path: Path, nb) -> list:
    "Cells whose `show_doc` output Jupyter would not display: several in one cell, or one that is not alone."
    problems = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code" or "show_doc" not in c.source or is_show_doc_cell(c): continue
        tree = _parse(c.source)
        n = len(_show_doc_calls(tree)) if tree else 0
        if n == 0: continue
        where = f"nbs/{nb_path.name} cell {i} (id {c.get('id')})"
        if n > 1: problems.append(f"{where}: {n} show_doc calls in one cell; Jupyter displays only a cell's last "
                                  "value, so all but one render nothing: give each show_doc its own cell")
        else: problems.append(f"{where}: show_doc must be alone in its cell (its output is the cell's last value): "
                              "move the other code to the next cell")
    return problems

def _import_only(cell) -> bool:
    tree = _parse(cell.source)
    return bool(tree and tree.body) and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body)

# ---------------------------------------------------------------------------------------------------------------
# API entries: computed from the package in one process (`--api-json`), rendered to Markdown by the builder

def _anno(a) -> str:
    if a is inspect.Parameter.empty: return ""
    s = a if isinstance(a, str) else inspect.formatannotation(a)
    return s.replace("typing.", "")

def _default(d) -> str:
    if d is inspect.Parameter.empty: return ""
    if inspect.isfunction(d) or inspect.isclass(d) or inspect.isbuiltin(d): return d.__name__
    r = repr(d)
    return re.sub(r" at 0x[0-9a-f]+", "", r)

def _params(sym, sig, is_method: bool) -> list:
    "(name, type, default, comment) per argument; the comments are fastcore `docments` (`a: int, # what a is`)."
    from fastcore.docments import docments
    try: dm = docments(sym, full=True, returns=False)
    except Exception: dm = {}
    out, ps = [], list(sig.parameters.values())
    if (is_method or inspect.isclass(sym)) and ps and ps[0].name in ("self", "cls"): ps = ps[1:]
    for p in ps:
        star = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        doc = (dm.get(p.name) or {}).get("docment") or ""
        out.append((star + p.name, _anno(p.annotation), _default(p.default), " ".join(doc.split())))
    return out

def format_signature(name: str, sig, params: list, width: int = 72) -> str:
    "One line when it fits in `width`, else one argument per line (a narrow column never cuts a signature off)."
    parts, kinds = [], [p.kind for p in sig.parameters.values()][-len(params):] if params else []
    seen_star = False
    for (n, t, d, _), k in zip(params, kinds):
        if k == inspect.Parameter.KEYWORD_ONLY and not seen_star:
            parts.append("*")
        seen_star = seen_star or k in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_POSITIONAL)
        parts.append(n + (f": {t}" if t else "") + ((" = " if t else "=") + d if d else ""))
    ret = _anno(sig.return_annotation)
    ret = f" -> {ret}" if ret else ""
    one = f"{name}({', '.join(parts)}){ret}"
    if len(one) <= width or not parts: return one
    return f"{name}(\n" + "".join(f"    {p},\n" for p in parts) + f"){ret}"

def _source(sym, lib: str):
    "(repo-relative module path, line, notebook, cell id) where `sym` is defined, when it is in this package."
    obj = inspect.unwrap(sym.fget if isinstance(sym, property) else sym)
    try:
        f, line = inspect.getsourcefile(obj), inspect.getsourcelines(obj)[1]
    except (TypeError, OSError): return None
    try: rel = Path(f).resolve().relative_to(ROOT)
    except ValueError: return None
    if rel.parts[0] != lib: return None
    nb, cell = None, None
    lines = (ROOT / rel).read_text().splitlines()[:line]
    for l in reversed(lines):
        if m := re.match(r"# %% \.\./nbs/(\S+\.ipynb)(?: #(\S+))?", l):
            nb, cell = m.group(1), m.group(2)
            break
    return dict(py=rel.as_posix(), line=line, nb=nb, cell=cell)

def api_entry(sym, lib: str, name: str | None = None, title_level: int = 3, home: str = "") -> dict:
    "What one `show_doc(sym)` shows, as data (`home`: the page's module, for values that do not know theirs)."
    target = sym.fget if isinstance(sym, property) else sym
    qual = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or name or repr(sym)
    mod = getattr(target, "__module__", None) or home
    is_method = "." in qual and not inspect.isclass(sym)
    kind = ("class" if inspect.isclass(sym) else "property" if isinstance(sym, property)
            else "method" if is_method else "function" if callable(sym) else "object")
    try: sig = inspect.signature(sym) if kind not in ("property", "object") else None
    except (TypeError, ValueError): sig = None
    params = _params(sym, sig, is_method) if sig is not None else []
    shown = name or qual
    if kind == "object":   # a constant: its value, cut short
        r = repr(sym)
        sig_text = f"{shown} = {r if len(r) <= 400 else r[:400] + ' ...'}"
    else:   # a method's signature starts with its own name: the heading above it says whose it is
        short = shown.rsplit(".", 1)[-1] if is_method else shown
        sig_text = format_signature(short, sig, params) if sig is not None else None
    return dict(name=shown, qualname=qual, module=mod, fullname=f"{mod}.{qual}" if mod else qual, kind=kind,
                anchor=qual.lower(), level=4 if (is_method or kind == "property") and title_level == 3 else title_level,
                signature=sig_text, params=params, doc=(inspect.getdoc(sym) or "") if kind != "object" else "",
                source=_source(sym, lib) if kind != "object" else None)

def compute_api(nb_paths: list) -> dict:
    "Evaluate every show_doc cell against the package; check every `__all__` name has an entry. Run in a child."
    lib = settings()["lib"]
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("MPLBACKEND", "Agg")
    pages, problems, mods = {}, [], {}
    for p in nb_paths:
        nb, entries = read_nb(p), {}
        mod_name = default_exp(nb)
        ns = {}
        if mod_name:
            try:
                mod = importlib.import_module(f"{lib}.{mod_name}")
                mods[mod.__name__] = (mod, p)
                ns.update(vars(mod))
            except Exception as e:
                problems.append(f"nbs/{p.name}: importing {lib}.{mod_name} failed: {type(e).__name__}: {e}")
        for c in nb.cells:   # the notebook's own imports (show_doc of a name from another module, say)
            exported = {"export", "exports", "exporti"} & set(directives(c.source))
            if c.cell_type == "code" and _import_only(c) and not exported:
                try: exec(compile(strip_directives(c.source), f"{p.name}:imports", "exec"), ns)
                except Exception as e: problems.append(f"nbs/{p.name}: an import cell failed: {type(e).__name__}: {e}")
        home = f"{lib}.{mod_name}" if mod_name else ""
        def show_doc(sym, renderer=None, name=None, title_level=3):
            return api_entry(sym, lib, name, title_level, home)
        ns["show_doc"] = show_doc
        for i, c in enumerate(nb.cells):
            if not is_show_doc_cell(c): continue
            try: entries[str(i)] = eval(compile(strip_directives(c.source), f"{p.name}:cell {i}", "eval"), ns)
            except Exception as e:
                problems.append(f"nbs/{p.name} cell {i} (id {c.get('id')}): {strip_directives(c.source)} failed: "
                                f"{type(e).__name__}: {e} (document exported or imported names only)")
        pages[p.name] = entries
    problems += _coverage(pages, mods, nb_paths)
    return dict(pages=pages, problems=problems)

def _coverage(pages: dict, mods: dict, nb_paths: list) -> list:
    "Each name in each module's `__all__`: an API entry somewhere (constants: named in backticks on its page)."
    documented = {e["fullname"] for es in pages.values() for e in es.values()}
    problems = []
    for mod_name, (mod, nb_path) in sorted(mods.items()):
        md_text = "\n".join(c.source for c in read_nb(nb_path).cells if c.cell_type == "markdown")
        md_text += "".join(f"`{e['name']}`" for e in pages[nb_path.name].values())
        missing = []
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name, None)
            if inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, property):
                full = f"{obj.__module__}.{obj.__qualname__}"
                if full not in documented: missing.append(name)
            elif f"`{name}`" not in md_text: missing.append(name)
        if missing:
            problems.append(f"nbs/{nb_path.name}: no API entry for {', '.join(missing)} (in {mod_name}.__all__): "
                            "add a `show_doc(name)` cell for each (constants: name them in backticks in a markdown "
                            "cell)")
    return problems

# ---------------------------------------------------------------------------------------------------------------
# Markdown for a page

_re_code_span = re.compile(r"(?<![`\[\w])`([A-Za-z_][\w.]*)(\(\))?`(?![`\]\w])")
_re_fence = re.compile(r"^\s*(```|~~~)")

class Linker:
    "Names in backticks -> links to their API entries (like nbdev's doclinks), preferring the page's own module."
    def __init__(self, entries_by_page: dict):
        self.table = {}
        for page, entries in entries_by_page.items():
            for e in entries:
                mod, q = e["module"], e["qualname"]
                home = mod.rsplit(".", 1)[-1] == e.get("page_module")
                for key in {q, e["name"], f"{mod.rsplit('.', 1)[-1]}.{q}", f"{mod}.{q}"}:
                    self.table.setdefault(key, []).append((home, mod, page, e["anchor"]))

    def target(self, name: str, page: str, page_mod: str | None):
        cands = self.table.get(name, [])
        if not cands: return None
        for pick in ([c for c in cands if c[0] and c[1].endswith(f".{page_mod}")],  # this page's module
                     [c for c in cands if c[0]], cands):                           # its home page, anywhere
            places = {(c[2], c[3]) for c in pick}
            if len({c[1] for c in pick}) == 1 and places:
                pg, anchor = sorted(places, key=lambda t: t[0] != page)[0]
                return f"#{anchor}" if pg == page else f"{pg}.html#{anchor}"
            if pick: return None   # two different objects share the name: say nothing rather than guess
        return None

    def linkify(self, md: str, page: str, page_mod: str | None, skip: str | None = None) -> str:
        out, fenced = [], False
        for line in md.splitlines():
            if _re_fence.match(line): fenced = not fenced
            elif not fenced and not line.startswith(("    ", "\t", "#")):
                def sub(m):
                    if m.group(1) == skip: return m.group(0)
                    t = self.target(m.group(1), page, page_mod)
                    return f"[{m.group(0)}]({t})" if t else m.group(0)
                line = _re_code_span.sub(sub, line)
            out.append(line)
        return "\n".join(out)

def _md_escape(s: str) -> str: return re.sub(r"([\\`*_{}\[\]<>|])", r"\\\1", s)

def _cell_md(s: str) -> str:
    "Table-cell text: one line, pipes escaped."
    return " ".join(s.split()).replace("|", "\\|")

def source_links(src: dict | None, cfg: dict, nb_name: str) -> list:
    "[(label, url)]: the notebook and the module line, in the repository when its URL is set, else shipped copies."
    if not src: return []
    nb = src.get("nb") or nb_name
    if cfg["git_url"]:
        base = f"{cfg['git_url']}/blob/{cfg['branch']}"
        return [("notebook", f"{base}/nbs/{nb}"), ("source", f"{base}/{src['py']}#L{src['line']}")]
    return [("notebook", f"_src/nbs/{nb}"), ("source", f"_src/{src['py']}.html#L-{src['line']}")]

def entry_markdown(e: dict, cfg: dict, linker: Linker, page: str, page_mod: str | None, nb_name: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    # the id is the lower-cased name, as nbdev's `_modidx` links it (`buffers.html#buffer.add`); a prose heading
    # with the same text gets another id
    lv = e["level"]
    out = [f'<h{lv} id="{html.escape(e["anchor"])}" class="api-title" markdown>{_md_escape(e["name"])}</h{lv}>', ""]
    links = " ".join(f'<a class="api-link" href="{html.escape(u)}">{t}</a>'
                     for t, u in source_links(e["source"], cfg, nb_name))
    out += [f'<p class="api-meta" data-search-exclude><span class="api-kind">{e["kind"]}</span> '
            f'<code class="api-path">{html.escape(e["fullname"])}</code> {links}</p>', ""]
    if e["signature"]:
        sig = highlight(e["signature"], PythonLexer(), HtmlFormatter(nowrap=True)).rstrip("\n")
        out += [f'<div class="api-sig highlight"><pre><code>{sig}</code></pre></div>', ""]
    if e["doc"]: out += [linker.linkify(e["doc"], page, page_mod, skip=e["name"]), ""]
    if e["params"]:   # the description column only when some argument has a `docments` comment
        described = any(c for *_, c in e["params"])
        head = ["argument", "type", "default"] + ["description"] * described
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for n, t, d, c in e["params"]:
            cells = [f"`{_cell_md(n)}`", f"`{_cell_md(t)}`" if t else "", f"`{_cell_md(d)}`" if d else ""]
            if described: cells.append(_cell_md(linker.linkify(c, page, page_mod)) if c else "")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)

def page_cells(nb, api: dict, cfg: dict, linker: Linker, page: str, nb_name: str, head: bool = True) -> dict:
    "Apply nbdev's page conventions and turn show_doc cells into API entries; returns a notebook dict."
    page_mod = default_exp(nb)
    src_links = source_links({"py": f"{cfg['lib']}/{page_mod}.py", "line": 1, "nb": nb_name}, cfg, nb_name) \
        if page_mod else [("notebook", f"{cfg['git_url']}/blob/{cfg['branch']}/nbs/{nb_name}" if cfg["git_url"]
                           else f"_src/nbs/{nb_name}")]
    links = " · ".join(f'<a href="{html.escape(u.split("#")[0])}">{t}</a>' for t, u in src_links)
    cells, put_head = [], not head
    for i, c in enumerate(nb.cells):
        d = directives(c.source) if c.cell_type == "code" else {}
        if c.cell_type == "markdown":
            c = {**c, "source": linker.linkify(c.source, page, page_mod)}
        elif HIDDEN & set(d) or d.get("include") == "false": continue
        elif str(i) in api:
            entry = entry_markdown(api[str(i)], cfg, linker, page, page_mod, nb_name)
            cells.append({"cell_type": "markdown", "source": entry})
            continue
        else:
            src = strip_directives(c.source)
            src = "\n".join(l for l in src.splitlines() if not re.search(r"#\|\s*hide_line\s*$", l))
            outputs = [] if d.get("output") == "false" else c.get("outputs", [])
            c = {**c, "source": "" if d.get("echo") == "false" or "hide_input" in d else src, "outputs": outputs}
            if not c["source"] and not outputs: continue
        cells.append(c)
        if not put_head and c["cell_type"] == "markdown" and re.search(r"^#\s", c["source"], re.M):
            cells.append({"cell_type": "markdown", "source": f'<p class="page-source">{links}</p>'})
            put_head = True
    meta = {"language_info": {"name": "python"},
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": meta, "cells": [_plain_cell(c) for c in cells]}

def _plain_cell(c: dict) -> dict:
    "Keep only the keys nbformat's schema allows (execnb adds timing metadata that strict validators reject)."
    out = {"id": c.get("id") or os.urandom(4).hex(), "cell_type": c["cell_type"], "source": c["source"],
           "metadata": {}}
    if c["cell_type"] == "code": out.update(outputs=c.get("outputs", []), execution_count=None)
    if "attachments" in c and c["cell_type"] != "code": out["attachments"] = c["attachments"]
    return out

def to_markdown(nb: dict, name: str, out_dir: Path) -> str:
    "Convert one processed notebook to Markdown; images are written next to it."
    import nbformat
    from nbconvert import MarkdownExporter
    body, res = MarkdownExporter().from_notebook_node(nbformat.from_dict(nb),
                                                      resources={"output_files_dir": f"{name}_files"})
    for fn, data in res.get("outputs", {}).items():
        p = out_dir / fn
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return _strip_ansi(body)

def _strip_ansi(s: str) -> str: return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", s)

# ---------------------------------------------------------------------------------------------------------------
# executing notebooks (full build)

EXEC_SNIPPET = r"""
import os, sys
sys.path.insert(0, sys.argv[4])
from pathlib import Path
from fastcore.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
import build_docs as bd
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
nb = read_nb(src)

def skip(cell):
    "Markdown, show_doc cells (their entries come from the package) and `#| eval: false` cells are not run."
    return cell.cell_type != 'code' or bd.is_show_doc_cell(cell) or bd.directives(cell.source).get('eval') == 'false'

os.environ.setdefault('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
os.chdir(src.parent)
CaptureShell(src).run_all(nb, exc_stop=True, preproc=skip, cell_timeout=int(sys.argv[3]))
write_nb(nb, dst)
"""

def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "IN_TEST"}   # documented sizes, not the test sizes
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return env

def execute(nb_path: Path, out_dir: Path, cell_timeout: int = 1800) -> Path:
    "Run a notebook in its own process; its outputs are written to `out_dir`."
    dst = out_dir / nb_path.name
    r = subprocess.run([sys.executable, "-c", EXEC_SNIPPET, str(nb_path), str(dst), str(cell_timeout),
                        str(Path(__file__).parent)], cwd=nb_path.parent, env=_env(), capture_output=True, text=True)
    if r.returncode != 0: raise RuntimeError(f"executing {nb_path.name} failed:\n{r.stderr[-6000:]}")
    return dst

def run_api(nb_paths: list, work: Path) -> dict:
    "compute_api in a child process (it imports the whole package; the builder stays light)."
    out = work / "api.json"
    r = subprocess.run([sys.executable, __file__, "--api-json", str(out), *map(str, nb_paths)], cwd=ROOT,
                       env={**_env(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
                       capture_output=True, text=True)
    if r.returncode != 0: raise RuntimeError(f"computing the API reference failed:\n{r.stderr[-6000:]}")
    return json.loads(out.read_text())

# ---------------------------------------------------------------------------------------------------------------
# the site

def _auto_render(kx: Path):
    "KaTeX's auto-render script: minified in the npm package, plain in Debian's libjs-katex."
    return next((p for p in (kx / "contrib" / "auto-render.min.js", kx / "contrib" / "auto-render.js") if p.exists()),
                None)

def katex_dir() -> Path:
    "Where KaTeX's distribution files are: OPTO_NB_KATEX, .cache/katex (npm), or Debian's libjs-katex."
    cands = [os.environ.get("OPTO_NB_KATEX"), ROOT / ".cache" / "katex" / "package" / "dist",
             "/usr/share/javascript/katex"]
    for c in cands:
        if c and (Path(c) / "katex.min.js").exists() and _auto_render(Path(c)): return Path(c)
    raise RuntimeError(KATEX_HELP)

KATEX_INIT = r"""// formulas: pymdownx.arithmatex marks them, KaTeX (shipped with the site) draws them
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".arithmatex").forEach(function (el) {
    renderMathInElement(el, {delimiters: [{left: "\\(", right: "\\)", display: false},
                                          {left: "\\[", right: "\\]", display: true}], throwOnError: false});
  });
});
"""

EXTRA_CSS = """/* API entries: signatures wrap instead of running off a narrow column */
.api-sig pre, .api-sig code { white-space: pre-wrap; overflow-wrap: anywhere; }
.api-meta { font-size: .75rem; margin: -.4rem 0 .4rem; }
.api-kind { font-style: italic; margin-right: .4rem; opacity: .8; }
.api-link { margin-left: .6rem; }
.api-path { font-size: .7rem; }
.page-source { font-size: .75rem; margin-top: -.6rem; }
.md-typeset h3.api-title, .md-typeset h4.api-title { font-family: var(--md-code-font-family, monospace); }
.md-typeset table:not([class]) td:first-child code { white-space: nowrap; }
"""

def _nav(pages: list) -> list:
    "Index first, then one section per decade of notebook numbers."
    nav, groups = [], {}
    for stem, nb_name, title in pages:
        if stem == "index":
            nav.insert(0, {title: "index.md"})
            continue
        m = re.match(r"(\d+)", nb_name)
        group = DECADES.get(int(m.group(1)) // 10, "More") if m else "More"
        groups.setdefault(group, []).append({title: f"{stem}.md"})
    order = list(DECADES.values()) + ["More"]
    return nav + [{g: groups[g]} for g in order if g in groups]

def ship_sources(site: Path, cfg: dict):
    "Without a repository URL, source links point at copies in the site: modules as line-numbered pages."
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    dst = site / "_src"
    (dst / "nbs").mkdir(parents=True, exist_ok=True)
    for p in NBS.glob("*.ipynb"): shutil.copy(p, dst / "nbs" / p.name)
    (dst / cfg["lib"]).mkdir(exist_ok=True)
    for p in sorted((ROOT / cfg["lib"]).glob("*.py")):
        fmt = HtmlFormatter(full=True, linenos="inline", lineanchors="L", anchorlinenos=True,
                            title=f"{cfg['lib']}/{p.name}")
        (dst / cfg["lib"] / f"{p.name}.html").write_text(highlight(p.read_text(), PythonLexer(), fmt))

def build(fast: bool, out: Path, only=None, jobs: int = 2, keep_going: bool = False) -> tuple:
    "Build the site into `out`; returns (out, problems). Problems raise unless `keep_going` (the site is kept)."
    cfg, nbs = settings(), notebooks(only)
    work = Path(tempfile.mkdtemp(prefix="opto_nb_docs_"))
    exe_dir, src_dir = work / "executed", work / "src"
    exe_dir.mkdir()
    src_dir.mkdir()
    problems = [p for nb in nbs for p in check_show_doc_cells(nb, read_nb(nb))]
    with ThreadPoolExecutor(max(1, jobs)) as ex:
        api_f = ex.submit(run_api, nbs, work)
        done = nbs if fast else list(ex.map(lambda p: execute(p, exe_dir), nbs))
        api = api_f.result()
    problems += api["problems"]
    loaded = [(p, read_nb(p)) for p in done]
    entries_by_page = {}
    for p, nb in loaded:
        mod = default_exp(nb)
        entries_by_page[page_stem(p)] = [{**e, "page_module": mod} for e in api["pages"].get(p.name, {}).values()]
    linker, pages = Linker(entries_by_page), []
    for p, nb in loaded:
        stem = page_stem(p)
        md = to_markdown(page_cells(nb, api["pages"].get(p.name, {}), cfg, linker, stem, p.name), stem, src_dir)
        (src_dir / f"{stem}.md").write_text(md)
        pages.append((stem, p.name, title_of(nb, p.stem)))
    if (NBS / "images").exists(): shutil.copytree(NBS / "images", src_dir / "images")  # pictures the prose links to
    kx = katex_dir()
    shutil.copytree(kx, src_dir / "assets" / "katex", ignore=shutil.ignore_patterns("*.mjs", "*.ttf", "*.woff"),
                    symlinks=False)   # Debian's fonts/ is a link into /usr/share/fonts: copy the files
    auto_render = f"assets/katex/contrib/{_auto_render(kx).name}"
    (src_dir / "assets" / "opto_nb.js").write_text(KATEX_INIT)
    (src_dir / "assets" / "opto_nb.css").write_text(EXTRA_CSS)
    mk = {
        "site_name": cfg["title"], "site_description": cfg["description"], "docs_dir": str(src_dir),
        "site_dir": str(out.resolve()), "use_directory_urls": False,
        "theme": {"name": "material", "font": False,   # no web fonts: the site asks nothing of other hosts
                  "features": ["navigation.sections", "search.highlight", "content.code.copy", "toc.follow"]},
        "plugins": [{"search": {"separator": r'[\s\-,:!=\[\]()"/]+|\.(?!\d)'}}],
        "markdown_extensions": ["tables", "attr_list", "md_in_html", "admonition", "pymdownx.superfences",
                                {"pymdownx.highlight": {"use_pygments": True}},
                                {"pymdownx.arithmatex": {"generic": True}},
                                {"toc": {"permalink": True}}],
        "extra_css": ["assets/katex/katex.min.css", "assets/opto_nb.css"],
        "extra_javascript": ["assets/katex/katex.min.js", auto_render,
                             "assets/opto_nb.js"],
        "nav": _nav(pages),
    }
    import yaml
    (work / "mkdocs.yml").write_text(yaml.safe_dump(mk, sort_keys=False))
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(work / "mkdocs.yml")],
                       capture_output=True, text=True)
    if r.returncode != 0: raise RuntimeError(f"mkdocs build failed:\n{r.stdout}\n{r.stderr}")
    if not cfg["git_url"]: ship_sources(out, cfg)
    shutil.rmtree(work)
    if problems and not keep_going:
        raise SystemExit("build_docs: the API reference is incomplete:\n  " + "\n  ".join(problems))
    return out, problems

def readme(path: Path = ROOT / "README.md") -> Path:
    "Write README.md from nbs/index.ipynb (executed, so its examples show their real output)."
    cfg = settings()
    work = Path(tempfile.mkdtemp(prefix="opto_nb_readme_"))
    nb = read_nb(execute(NBS / "index.ipynb", work))
    md = to_markdown(page_cells(nb, {}, cfg, Linker({}), "index", "index.ipynb", head=False), "README", work)
    if any(work.glob("README_files/*")):
        raise RuntimeError("index.ipynb must not produce images: README has no asset folder")
    # pictures: absolute from the repository URL when there is one (a package index shows those), else relative
    img = f"{cfg['git_url']}/raw/{cfg['branch']}/nbs/images/" if cfg["git_url"] else "nbs/images/"
    md = md.replace("](images/", f"]({img}")
    from opto_nb.utils import atomic_write
    atomic_write(path, md.strip() + "\n", mode="w")
    shutil.rmtree(work)
    return path

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true", help="execute nothing: the API reference and stored outputs")
    ap.add_argument("--readme", action="store_true", help="only regenerate README.md from nbs/index.ipynb")
    ap.add_argument("--out", default=str(ROOT / "docs"), help="site folder (default: docs/)")
    ap.add_argument("--only", nargs="*", help="build only notebooks whose name contains one of these")
    ap.add_argument("--jobs", type=int, default=2, help="notebooks executed in parallel")
    ap.add_argument("--keep-going", action="store_true",
                    help="write the site even when the API reference is incomplete (the exit status is still 1)")
    ap.add_argument("--api-json", nargs="+", metavar=("OUT", "NOTEBOOK"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.api_json:
        out, *nbs = a.api_json
        Path(out).write_text(json.dumps(compute_api([Path(n) for n in nbs])))
    elif a.readme: print(f"wrote {readme()}")
    else:
        site, problems = build(a.fast, Path(a.out), a.only, a.jobs, a.keep_going)
        print(f"built {site}")
        if problems:
            print("the API reference is incomplete:\n  " + "\n  ".join(problems), file=sys.stderr)
            sys.exit(1)
