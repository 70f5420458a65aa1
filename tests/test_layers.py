"""The layers of ARCHITECTURE.md hold: a module imports only modules from notebooks with a lower number.

Read from the exported modules with `ast` (nothing imported); a notebook's number comes from the `# %% ../nbs/NN_`
markers nbdev writes, so renaming a notebook keeps the check true to `ls nbs/`.
"""
import ast, re
from conftest import ROOT

LIB = ROOT / "opto_nb"

def _numbers() -> dict:
    "{module: notebook number} from the cell markers of each exported module."
    out = {}
    for py in LIB.glob("*.py"):
        m = re.search(r"^# %% \.\./nbs/(\d+)_", py.read_text(), re.M)
        if m: out[py.stem] = int(m.group(1))
    return out

def _imports(py) -> set:
    "The opto_nb modules `py` imports, at any depth of the file (functions included)."
    found = set()
    for n in ast.walk(ast.parse(py.read_text())):
        if isinstance(n, ast.ImportFrom):
            if n.level == 1 and n.module: found.add(n.module.split(".")[0])
            elif n.level == 1: found.update(a.name for a in n.names)
            elif n.module and n.module.startswith("opto_nb."): found.add(n.module.split(".")[1])
        elif isinstance(n, ast.Import):
            found.update(a.name.split(".")[1] for a in n.names if a.name.startswith("opto_nb."))
    return found

def test_every_module_has_a_notebook():
    nums = _numbers()
    missing = [p.stem for p in LIB.glob("*.py") if not p.stem.startswith("_") and p.stem not in nums]
    assert not missing, f"modules not exported from a numbered notebook: {missing}"

def test_lower_numbers_never_import_higher():
    nums = _numbers()
    bad = [f"{mod} ({nums[mod]:02d}) imports {dep} ({nums[dep]:02d})"
           for mod in nums for dep in _imports(LIB / f"{mod}.py")
           if dep in nums and nums[dep] >= nums[mod] and dep != mod]
    assert not bad, "imports against the layers:\n" + "\n".join(bad)
