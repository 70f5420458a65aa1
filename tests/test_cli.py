"""The `opto_nb` console script end to end (subprocesses): a tiny design run, stop + --resume, program, help and errors."""
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

pytest.importorskip('rdkit')

# the installed console script; without it (package not installed with its scripts) the same entry point via python
_EXE = shutil.which('opto_nb')
CMD = [_EXE] if _EXE else [sys.executable, '-c', 'import sys; from opto_nb.cli import main; sys.exit(main())']
# a small model and dataset: the whole run takes a few seconds; step budgets make it reproducible
TINY = ['--n-train', '300', '--emb-dim', '16', '--hidden-dim', '32', '--n-layers', '1', '--pretrain-bs', '16', '--bs', '16',
        '--n-eval', '32', '--top-k', '10', '--quiet']


def opto_nb(*args, env=None, timeout=120):
    return subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_design_end_to_end(tmp_path):
    out = tmp_path / 'run'
    r = opto_nb('design', '--pretrain-steps', 8, '--rl-steps', 6, '--out', out, *TINY)
    assert r.returncode == 0, r.stderr
    assert 'top-10 mean qed' in r.stdout and 'validity' in r.stdout
    names = {p.name for p in out.iterdir()}
    assert {'config.json', 'checkpoints', 'metrics.csv', 'metrics.jsonl', 'samples.csv', 'top_molecules.csv', 'report',
            'model.pt', 'summary.json'} <= names
    s = json.loads((out / 'summary.json').read_text())
    assert s['finished'] and s['steps'] == 14 and s['pretrain_steps'] == 8 and s['rl_steps'] == 6
    assert 0 <= s['validity'] <= 1 and s['n_sampled'] > 0
    rows = (out / 'metrics.csv').read_text().splitlines()
    assert len(rows) == 1 + 14                                    # header + one row per batch
    assert len((out / 'metrics.jsonl').read_text().splitlines()) == 14
    top = (out / 'top_molecules.csv').read_text().splitlines()
    assert top[0].startswith('rank,smiles,score,qed,') and len(top) - 1 == s['n_top']
    html = (out / 'report' / 'report.html').read_text()
    assert '<img' in html and list((out / 'report').glob('*.png'))
    assert json.loads((out / 'config.json').read_text())['rl_steps'] == 6
    # the same folder again without --resume: refused, nothing overwritten
    r2 = opto_nb('design', '--pretrain-steps', 8, '--rl-steps', 6, '--out', out, *TINY)
    assert r2.returncode == 1 and '--resume' in r2.stderr


def test_design_resume(tmp_path):
    out = tmp_path / 'run'
    r = opto_nb('design', '--pretrain-steps', 6, '--rl-steps', 6, '--checkpoint-every', 4, '--max-batches', 8, '--out', out, *TINY)
    assert r.returncode == 0, r.stderr
    s = json.loads((out / 'summary.json').read_text())
    assert not s['finished'] and s['steps'] == 8
    assert list((out / 'checkpoints').glob('ckpt-00000008-rl-*.pt'))        # stopped in the rl stage, state saved
    r = opto_nb('design', '--resume', '--out', out, '--quiet')
    assert r.returncode == 0, r.stderr
    s = json.loads((out / 'summary.json').read_text())
    assert s['finished'] and s['steps'] == 12 and s['pretrain_steps'] == 6 and s['rl_steps'] == 6
    batches = [int(line.split(',')[0]) for line in (out / 'metrics.csv').read_text().splitlines()[1:]]
    assert batches == list(range(12))                           # the log continues where the first process stopped
    # resuming a finished run only rewrites its outputs
    r = opto_nb('design', '--resume', '--out', out, '--quiet')
    assert r.returncode == 0 and json.loads((out / 'summary.json').read_text())['steps'] == 12


def test_program(tmp_path):
    out = tmp_path / 'prog'
    r = opto_nb('program', '--epochs', 3, '--out', out, '--quiet')
    assert r.returncode == 0, r.stderr
    assert {'config.json', 'checkpoint.pt', 'history.csv', 'report', 'summary.json'} <= {p.name for p in out.iterdir()}
    s = json.loads((out / 'summary.json').read_text())
    assert s['steps'] == 18 and s['test_score_end'] > s['test_score_start']
    assert (out / 'history.csv').read_text().startswith('step,name,value')
    r = opto_nb('program', '--resume', '--epochs', 3, '--out', out, '--quiet')
    assert r.returncode == 0 and json.loads((out / 'summary.json').read_text())['steps'] == 18


def test_help():
    r = opto_nb('--help')
    assert r.returncode == 0 and 'design' in r.stdout and 'program' in r.stdout
    r = opto_nb('design', '--help')
    assert r.returncode == 0
    for flag in ('--objective', '--target', '--minutes', '--seed', '--out', '--resume', '--quiet', '--pretrain-share',
                 '--buffer-share', '--novelty', '--clip-eps', '--temperature', '--max-batches'):
        assert flag in r.stdout, flag
    r = opto_nb('program', '--help')
    assert r.returncode == 0 and '--epochs' in r.stdout and '--proposals' in r.stdout
    r = opto_nb()
    assert r.returncode == 2 and 'usage' in r.stdout


@pytest.mark.parametrize('args, code, msg', [
    (['design', '--objective', 'logp'], 2, "argument --objective: invalid choice: 'logp'"),
    (['design', '--minutes', '-1'], 2, "argument --minutes: must be > 0"),
    (['design', '--minutes', 'ten'], 2, "argument --minutes: invalid float value: 'ten'"),
    (['design', '--buffer-share', '1.5'], 2, "`--buffer-share` must be in [0, 1)"),
    (['design', '--loss', 'a2c'], 2, "argument --loss: invalid choice"),
    (['design', '--unknown-flag'], 2, "unrecognized arguments: --unknown-flag"),
    (['frobnicate'], 2, "invalid choice: 'frobnicate'"),
    (['program', '--epochs', '0'], 2, "argument --epochs: must be > 0"),
])
def test_bad_arguments(args, code, msg):
    r = opto_nb(*args)
    assert r.returncode == code and msg in r.stderr, r.stderr


def test_nothing_to_resume(tmp_path):
    r = opto_nb('design', '--resume', '--out', tmp_path / 'missing')
    assert r.returncode == 1 and 'no run to resume' in r.stderr


def test_missing_rdkit(tmp_path):
    # a stand-in `rdkit` package that cannot be imported, first on the path: as if the chem extra were not installed
    fake = tmp_path / 'fake' / 'rdkit'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text("raise ImportError('No module named rdkit (test stand-in)')\n")
    env = {'PYTHONPATH': os.pathsep.join([str(fake.parent)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])}
    r = opto_nb('design', '--out', tmp_path / 'run', env=env)
    assert r.returncode == 1 and 'pip install opto_nb[chem]' in r.stderr, r.stderr
    assert not (tmp_path / 'run').exists()
