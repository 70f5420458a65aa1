"""tools/train_prior.py end to end on a prefix of the real MOSES file (the molsets wheel is fetched from PyPI once per
session): a first stage, a second stage that continues from the first one's model file on molecules it did not see,
with random spellings, and the checks that refuse a mismatched model or an empty data range before anything runs."""
import hashlib, json, subprocess, sys
from pathlib import Path

import pytest

pytest.importorskip('rdkit')
ROOT = Path(__file__).resolve().parents[1]
SMALL = ['--max-molecules', 12000, '--n-valid', 500, '--n-eval', 100, '--sample-n', 50, '--threads', 1,
         '--no-package']


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp('moses_cache')


def train_prior(cache, *args):
    cmd = [sys.executable, str(ROOT / 'tools' / 'train_prior.py'), '--cache-dir', str(cache), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_two_stages(cache, tmp_path):
    r = train_prior(cache, *SMALL, '--steps', 6, '--ckpt-dir', tmp_path / 'one')
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    first = tmp_path / 'one' / 'final_fp32.pt'
    figures = json.loads((tmp_path / 'one' / 'figures.json').read_text())
    assert figures['figures']['steps'] == 6 and figures['training']['init'] is None
    assert figures['training']['dataset']['n_train'] == 12000 - 500

    r = train_prior(cache, *SMALL, '--steps', 4, '--skip-molecules', 6000, '--init', first, '--randomize', 0.5,
                    '--ckpt-dir', tmp_path / 'two')
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f'starting from the weights of {first}' in r.stdout
    d = json.loads((tmp_path / 'two' / 'figures.json').read_text())['training']
    assert d['init']['sha256'] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert d['init']['figures']['steps'] == 6
    assert d['dataset']['skipped_first'] == 6000 and d['dataset']['n_train'] == 12000 - 6000 - 500
    assert d['randomize'] == 0.5 and '--randomize 0.5' in d['command']


def test_refused_before_training(cache, tmp_path):
    r = train_prior(cache, *SMALL, '--steps', 2, '--ckpt-dir', tmp_path / 'one')
    assert r.returncode == 0, r.stderr[-2000:]
    first = tmp_path / 'one' / 'final_fp32.pt'
    r = train_prior(cache, *SMALL, '--steps', 2, '--init', first, '--hidden-dim', 128, '--ckpt-dir', tmp_path / 'x')
    assert r.returncode != 0 and '--hidden-dim 256' in r.stderr and not (tmp_path / 'x').exists(), r.stderr
    r = train_prior(cache, *SMALL, '--skip-molecules', 12000, '--ckpt-dir', tmp_path / 'y')
    assert r.returncode != 0 and 'must exceed --skip-molecules' in r.stderr, r.stderr
    r = train_prior(cache, *SMALL, '--randomize', 1.5, '--ckpt-dir', tmp_path / 'y')
    assert r.returncode != 0 and '`--randomize` must be in [0, 1]' in r.stderr, r.stderr
    r = train_prior(cache, *SMALL, '--init', tmp_path / 'none.pt', '--ckpt-dir', tmp_path / 'y')
    assert r.returncode != 0 and 'none.pt does not exist' in r.stderr and not (tmp_path / 'y').exists(), r.stderr
