"The Oracle on a real local Ray: a CPU-heavy scorer gives the same scores in the same order, failures are counted."
import sys
import numpy as np
import pytest

ray = pytest.importorskip("ray")
import cloudpickle
from opto_nb import chem
from opto_nb.objectives import Oracle, auc_top_k
from opto_nb.rollouts import RayExecutor

# Ray workers cannot import this test file, so its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

def relaxed_energy(smiles):
    "A CPU-heavy score: minus the MMFF energy per heavy atom of an embedded, relaxed conformer; raises for 'CCOCC'."
    from rdkit import Chem
    from rdkit.Chem import AllChem
    out = []
    for s in smiles:
        if s == 'CCOCC': raise ValueError("not this one")
        m = Chem.AddHs(Chem.MolFromSmiles(s))
        AllChem.EmbedMolecule(m, randomSeed=0)
        ff = AllChem.MMFFGetMoleculeForceField(m, AllChem.MMFFGetMoleculeProperties(m))
        ff.Minimize(maxIts=200)
        out.append(-ff.CalcEnergy() / m.GetNumHeavyAtoms())
    return out

@pytest.fixture(scope="module")
def rx():
    ex = RayExecutor(num_cpus=2, start_attempts=3,
                     init_kwargs=dict(include_dashboard=False, num_gpus=0, object_store_memory=80 * 1024 * 1024))
    yield ex
    ex.shutdown()

def test_oracle_on_ray_equals_in_process(rx):
    sf = chem.SanityFilter()
    mols = [s for s in chem.load_nci(60) if sf.check_mol(chem.to_mol(s)) is None][:16] + ['CCOCC', 'C1CC']
    local = Oracle(relaxed_energy)
    expect = local(mols)
    ro = Oracle(relaxed_energy, executor=rx, chunk_size=4, budget=100)
    got = ro(mols)
    assert rx.num_workers == 2
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-9)           # same scores, same order, NaN in place
    assert ro.last_reasons[-2:] == ['failed', 'invalid']
    assert (ro.n_calls, ro.n_failed, ro.molecules) == (local.n_calls, 1, local.molecules)
    again = ro(mols[::-1])                                                # all from the cache: no Ray task, no call
    np.testing.assert_allclose(again, expect[::-1], rtol=0, atol=1e-9)
    assert ro.n_calls == len(mols) - 1 and ro.n_hits == len(mols) - 1
    assert auc_top_k(ro.history, budget=100) == auc_top_k(local.history, budget=100)

def test_oracle_on_ray_budget(rx):
    mols = chem.load_nci(40)
    ro = Oracle(relaxed_energy, executor=rx, chunk_size=3, budget=7, sanity=None)
    got = ro(mols[:12])
    assert ro.n_calls == 7 and ro.exhausted
    assert ro.last_reasons[7:] == ['budget'] * 5 and np.isnan(got[7:]).all() and not np.isnan(got[:7]).any()
