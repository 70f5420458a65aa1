"""The `opto_nb` console script end to end: the shipped prior, design runs in real subprocesses (from the prior with a
custom objective, from scratch with `--prior nci`, oracle budget, exact resume of the reinvent learner after a stop
with a damaged newest checkpoint, a finished run left intact, one writer per folder), program, help, version, and
errors that name the option and leave nothing written."""
import errno, json, os, re, shutil, subprocess
from pathlib import Path

import pytest
from conftest import console_script

pytest.importorskip('rdkit')

# the installed console script; without it (package not installed with its scripts) the same entry point via python
CMD = console_script()
# small batches and evaluation; step budgets make a run reproducible
SMALL = ['--bs', '32', '--n-eval', '32', '--top-k', '10', '--quiet']
# from scratch: a small model and dataset that learns valid molecules in 40 pretrain steps (a few seconds)
NCI = ['--prior', 'nci', '--n-train', '1500', '--max-tokens', '20', '--emb-dim', '16', '--hidden-dim', '64',
       '--n-layers', '1', '--pretrain-bs', '32', '--pretrain-lr', '5e-3', *SMALL]
ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}


def opto_nb(*args, env=None, timeout=120, umask=None):
    return subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **ENV, **(env or {})}, umask=-1 if umask is None else umask)


def in_process(*args, capsys=None):
    "main(argv) in this process -> (exit status, stdout, stderr)."
    from opto_nb.cli import main
    try: rc = main([str(a) for a in args])
    except SystemExit as e: rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def files_and_times(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob('*') if p.is_file()}


def test_shipped_prior():
    """The shipped prior loads as a model file and samples valid, distinct molecules: at least 0.85 of 200 fresh samples
    valid (its file records 0.955 over 10,000), no less than that recorded figure minus sampling noise, and at least
    0.97 distinct."""
    import torch
    from opto_nb import chem
    from opto_nb.design import MODEL_FORMAT, load_model, prior_path
    path = prior_path('moses')
    d = torch.load(path, map_location='cpu', weights_only=False)
    assert d['format'] == MODEL_FORMAT and d['vocab'][:4] == ['<pad>', '<bos>', '<eos>', '<unk>']
    agent = load_model(path)
    torch.manual_seed(0)
    with torch.no_grad(): smiles = agent.sample_strings(200)
    validity = chem.validity(smiles)
    assert validity >= 0.85, validity
    recorded = d['figures']['validity']
    assert recorded >= 0.9 and validity >= recorded - 0.06, (validity, recorded)   # 0.06: > 3 sd at n = 200
    assert len(set(smiles)) >= 0.97 * len(smiles)


def test_design_from_prior_custom_objective(tmp_path):
    "The default run (shipped prior, reinvent) with a `module:function` objective, end to end: RL only, all outputs."
    (tmp_path / 'my_objective.py').write_text(
        "def carbons(smiles):\n    return [min(1.0, s.count('C') / 20) for s in smiles]\n")
    out = tmp_path / 'run'
    env = {'PYTHONPATH': os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get('PYTHONPATH')])])}
    r = opto_nb('design', '--objective', 'my_objective:carbons', '--rl-steps', 4, '--bs', 16, '--replay', 8,
                '--n-eval', 32, '--top-k', 10, '--quiet', '--out', out, env=env)
    assert r.returncode == 0, r.stderr
    s = json.loads((out / 'summary.json').read_text())
    assert s['finished'] and (s['prior'], s['learner'], s['pretrain_steps'], s['rl_steps']) == ('moses', 'reinvent',
                                                                                              0, 4)
    assert s['objective'] == 'carbons' and s['n_calls'] > 10 and s['validity'] > 0.3 and s['top1'] > 0
    cfg = json.loads((out / 'config.json').read_text())
    assert (cfg['objective'], cfg['prior'], cfg['sigma'], cfg['replay'], cfg['augment']) == (
        'my_objective:carbons', 'moses', 128.0, 8, 1)
    rows = (out / 'metrics.csv').read_text().splitlines()
    header = rows[0].split(',')
    assert len(rows) == 1 + 4 and {'aug_loss', 'augmented', 'oracle_calls'} <= set(header)
    html = (out / 'report' / 'report.html').read_text()
    assert 'best molecules' in html and 'best scores over oracle calls' in html and '<svg' in html


def test_design_end_to_end(tmp_path):
    "`--prior nci`: a model trained from scratch (pretrain stage, then rl), every output, a finished run left intact."
    out = tmp_path / 'run'
    r = opto_nb('design', '--pretrain-steps', 40, '--rl-steps', 6, '--out', out, *NCI)
    assert r.returncode == 0, r.stderr
    assert 'top-10 mean qed' in r.stdout and 'oracle calls' in r.stdout and 'AUC top-100' in r.stdout
    names = {p.name for p in out.iterdir()}
    assert {'config.json', 'checkpoints', 'metrics.csv', 'metrics.jsonl', 'samples.csv', 'top_molecules.csv', 'report',
            'model.pt', 'summary.json'} <= names
    s = json.loads((out / 'summary.json').read_text())
    assert s['finished'] and s['steps'] == 46 and s['pretrain_steps'] == 40 and s['rl_steps'] == 6
    assert 0 <= s['validity'] <= 1 and s['n_sampled'] > 0 and s['n_calls'] > 0 and s['oracle_budget'] is None
    assert s['top1'] >= s['top10'] >= s['top100'] and 0 < s['auc_top1'] <= s['top1']
    assert s['rejected']['invalid'] > 0 and s['n_requested'] >= s['n_calls'] + sum(s['rejected'].values())
    rows = (out / 'metrics.csv').read_text().splitlines()
    assert len(rows) == 1 + 46 and 'oracle_calls' in rows[0].split(',')          # header + one row per batch
    assert len((out / 'metrics.jsonl').read_text().splitlines()) == 46
    top = (out / 'top_molecules.csv').read_text().splitlines()
    assert top[0].startswith('rank,smiles,score,qed,') and len(top) - 1 == s['n_top'] > 0
    html = (out / 'report' / 'report.html').read_text()
    assert '<img' in html and 'best molecules' in html and list((out / 'report').glob('*.png'))
    assert json.loads((out / 'config.json').read_text())['rl_steps'] == 6
    # the same folder again without --resume: refused, nothing overwritten
    before = files_and_times(out)
    r = opto_nb('design', '--pretrain-steps', 40, '--rl-steps', 6, '--out', out, *NCI)
    assert r.returncode == 1 and '--resume' in r.stderr
    # --resume of the finished run: reported as it is, nothing retrained or rewritten
    r = opto_nb('design', '--resume', '--out', out)
    assert r.returncode == 0 and 'has finished already (46 steps)' in r.stdout, r.stderr
    assert 'top-10 mean qed' in r.stdout and files_and_times(out) == before
    # killed after the final checkpoint, before the last outputs: --resume writes them from it, trains nothing, and
    # removes what the killed writes left (the temporaries `atomic_write` names '.NAME.XXXX.tmp')
    top, model = (out / 'top_molecules.csv').read_bytes(), (out / 'model.pt').read_bytes()
    (out / 'summary.json').unlink()
    (out / 'top_molecules.csv').unlink()
    stale = [out / '.top_molecules.csv.k1ll.tmp', out / 'report' / '.report.html.k1ll.tmp']
    for f in stale: f.write_text('half a file')
    r = opto_nb('design', '--resume', '--out', out, '--quiet')
    assert r.returncode == 0 and 'had finished (46 steps)' in r.stdout and 'no training' in r.stdout, r.stdout
    assert (out / 'top_molecules.csv').read_bytes() == top and (out / 'model.pt').read_bytes() == model
    assert not any(f.exists() for f in stale)
    assert len((out / 'metrics.csv').read_text().splitlines()) == 1 + 46


def test_design_oracle_budget_and_exact_resume(tmp_path):
    """The reinvent learner from the shipped prior: an oracle budget ends the run at exactly N calls; a stopped run
    whose newest checkpoint is damaged resumes from the one before (with a warning naming the file) and ends exactly as
    the run that was never stopped (replay buffer, randomized SMILES, frozen prior and all)."""
    args = ['--rl-steps', 40, '--oracle-budget', 100, '--checkpoint-every', 4, '--bs', 16, '--replay', 8,
            '--n-eval', 32, '--top-k', 10, '--quiet']
    full, cut = tmp_path / 'full', tmp_path / 'cut'
    r = opto_nb('design', *args, '--out', full)
    assert r.returncode == 0, r.stderr
    a = json.loads((full / 'summary.json').read_text())
    assert a['finished'] and a['n_calls'] == 100 and a['oracle_budget'] == 100 and 'oracle budget' in a['stop_reason']
    assert a['learner'] == 'reinvent' and a['steps'] > 6
    r = opto_nb('design', *args, '--max-batches', 6, '--out', cut)
    assert r.returncode == 0, r.stderr
    b = json.loads((cut / 'summary.json').read_text())
    assert not b['finished'] and b['steps'] == 6 and b['n_calls'] < 100
    ckpts = sorted((cut / 'checkpoints').glob('ckpt-*.pt'))
    assert [p.name[:13] for p in ckpts] == ['ckpt-00000004', 'ckpt-00000006'], ckpts
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:1000])                   # the newest checkpoint, cut short
    r = opto_nb('design', '--resume', '--out', cut, '--quiet')
    assert r.returncode == 0, r.stderr
    assert 'warning' in r.stderr and ckpts[-1].name in r.stderr, r.stderr
    b = json.loads((cut / 'summary.json').read_text())
    assert b['resumed_from'].endswith(ckpts[0].name)
    for k in ('n_calls', 'n_requested', 'n_hits', 'rejected', 'steps', 'rl_steps', 'top1', 'top10', 'auc_top1',
              'auc_top10', 'auc_top100', 'validity', 'n_sampled', 'stop_reason'):
        assert a[k] == b[k], (k, a[k], b[k])
    assert (full / 'top_molecules.csv').read_text() == (cut / 'top_molecules.csv').read_text()
    assert (full / 'samples.csv').read_text() == (cut / 'samples.csv').read_text()   # replayed and augmented rows too
    import torch
    ma, mb = (torch.load(p / 'model.pt', weights_only=False)['state_dict'] for p in (full, cut))
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    batches = [int(line.split(',')[0]) for line in (cut / 'metrics.csv').read_text().splitlines()[1:]]
    assert batches == list(range(a['steps']))                  # the log continues where the checkpoint was taken


def test_files_follow_umask(tmp_path):
    "Every file and folder of a run gets the permissions the user's umask gives (a report can be shared or served)."
    r = opto_nb('design', '--rl-steps', 2, '--checkpoint-every', 1, '--out', tmp_path / 'run', *SMALL, umask=0o027)
    assert r.returncode == 0, r.stderr
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777 for p in (tmp_path / 'run').rglob('*')}
    assert {'run/model.pt', 'run/summary.json', 'run/report/report.html'} <= set(modes), sorted(modes)
    assert set(modes.values()) <= {0o640, 0o750}, {k: oct(m) for k, m in modes.items() if m not in (0o640, 0o750)}
    assert {modes[k] for k in modes if (tmp_path / k).is_dir()} == {0o750}


def test_one_writer_per_folder(tmp_path):
    "A run folder another process holds is refused with the holder named, before anything is written."
    from opto_nb.utils import FolderLock
    out = tmp_path / 'busy'
    with FolderLock(out):
        r = opto_nb('design', '--rl-steps', 2, '--out', out, *SMALL)
    assert r.returncode == 1 and f'is in use by process {os.getpid()}' in r.stderr, r.stderr
    assert not (out / 'config.json').exists()


def test_program(tmp_path):
    out = tmp_path / 'prog'
    r = opto_nb('program', '--epochs', 3, '--out', out, '--quiet')
    assert r.returncode == 0, r.stderr
    assert {'config.json', 'checkpoint.pt', 'history.csv', 'report', 'summary.json'} <= {p.name for p in out.iterdir()}
    s = json.loads((out / 'summary.json').read_text())
    assert s['steps'] == 18 and s['test_score_end'] > s['test_score_start'] and 'test score' in r.stdout
    assert (out / 'history.csv').read_text().startswith('step,name,value')
    r = opto_nb('program', '--resume', '--epochs', 3, '--out', out, '--quiet')
    assert r.returncode == 0 and json.loads((out / 'summary.json').read_text())['steps'] == 18


def test_help():
    r = opto_nb('--help')
    assert r.returncode == 0 and 'design' in r.stdout and 'program' in r.stdout
    r = opto_nb('design', '--help')
    assert r.returncode == 0
    for flag in ('--objective', '--target', '--minutes', '--oracle-budget', '--sanity', '--seed', '--out', '--resume',
                 '--quiet', '--pretrain-share', '--buffer-share', '--novelty', '--clip-eps', '--temperature',
                 '--max-batches', '--scaffold-min-score', '--prior', '--learner', '--sigma', '--replay', '--augment'):
        assert flag in r.stdout, flag
    assert '(default: None)' not in r.stdout and not re.search(r'\(default: [^)]*\)\s+\(default:', r.stdout)


def test_version_and_no_command(capsys):
    rc, out, _ = in_process('--version', capsys=capsys)
    assert rc == 0 and out.startswith('opto_nb ')
    rc, out, _ = in_process(capsys=capsys)
    assert rc == 2 and 'usage' in out


@pytest.mark.parametrize('args, code, msg', [
    (['design', '--objective', 'logp'], 2, "`--objective` 'logp' is not a named objective"),
    (['design', '--objective', 'no_such_package_xyz:score'], 2, "`--objective` cannot import"),
    (['design', '--objective', 'missing.toml'], 2, "`--objective`: no scoring file at missing.toml"),
    (['design', '--objective', 'rediscovery', '--target', 'C1CC'], 2, "`--target` must be a valid SMILES"),
    (['design', '--target', 'CCO'], 2, "`--target` is used only by the objectives that take a target"),
    (['design', '--minutes', '-1'], 2, "argument --minutes: must be > 0"),
    (['design', '--minutes', 'ten'], 2, "argument --minutes: invalid float value: 'ten'"),
    (['design', '--novelty', 'inf'], 2, "argument --novelty: must be a finite number, got 'inf'"),
    (['design', '--kl-coef', 'nan'], 2, "argument --kl-coef: must be a finite number, got 'nan'"),
    (['design', '--entropy-coef=-inf'], 2, "argument --entropy-coef: must be a finite number"),
    (['design', '--scaffold-min-score', 'nan'], 2, "argument --scaffold-min-score: must be a finite number"),
    (['design', '--oracle-budget', '0'], 2, "argument --oracle-budget: must be >= 1"),
    (['design', '--buffer-share', '1.5'], 2, "`--buffer-share` must be in [0, 1)"),
    (['design', '--learner', 'a2c'], 2, "argument --learner: invalid choice"),
    (['design', '--prior', 'missing.pt'], 2, "`--prior`: no model file at missing.pt"),
    (['design', '--prior', 'nci', '--rl-steps', '5', '--minutes', '0'], 2, "argument --minutes: must be > 0"),
    (['design', '--sigma', '-1'], 2, "argument --sigma: must be > 0"),
    (['design', '--replay', '-1'], 2, "argument --replay: must be >= 0"),
    (['design', '--unknown-flag'], 2, "unrecognized arguments: --unknown-flag"),
    (['design', '--resume'], 2, "--resume needs --out"),
    (['frobnicate'], 2, "invalid choice: 'frobnicate'"),
    (['program', '--epochs', '0'], 2, "argument --epochs: must be > 0"),
])
def test_bad_arguments(args, code, msg, tmp_path, capsys, monkeypatch):
    "Checked before anything is written (in process: the script's own exit codes are checked above)."
    monkeypatch.chdir(tmp_path)                      # the default run folder would be runs/... here
    rc, out, err = in_process(*args, capsys=capsys)
    assert rc == code and msg in err, err
    assert not list(tmp_path.iterdir())


def test_bad_prior_files(tmp_path, capsys, monkeypatch):
    "A model file that does not load, and a missing shipped prior: errors naming the file and the way out."
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'junk.pt').write_bytes(b'not a model')
    rc, _, err = in_process('design', '--prior', tmp_path / 'junk.pt', '--out', tmp_path / 'run', capsys=capsys)
    assert rc == 2 and f"`--prior` {tmp_path / 'junk.pt'} is not a model file opto_nb can load" in err, err
    from opto_nb import design
    monkeypatch.setitem(design.PRIOR_FILES, 'moses', 'no_such_prior.pt')
    rc, _, err = in_process('design', '--out', tmp_path / 'run', capsys=capsys)
    assert rc == 2 and 'no_such_prior.pt is missing' in err and '--prior nci' in err and 'train_prior.py' in err, err
    assert not (tmp_path / 'run').exists()


def test_run_errors(tmp_path, capsys):
    "Nothing to resume, a broken config.json, a full disk: one line naming the file and the cause, exit status 1."
    rc, _, err = in_process('design', '--resume', '--out', tmp_path / 'missing', capsys=capsys)
    assert rc == 1 and 'no run to resume' in err
    (tmp_path / 'broken').mkdir()
    (tmp_path / 'broken' / 'config.json').write_text('{"objective": "qed", "bs": ')
    rc, _, err = in_process('design', '--resume', '--out', tmp_path / 'broken', capsys=capsys)
    assert rc == 1 and f"{tmp_path / 'broken' / 'config.json'} is not a valid run configuration" in err, err
    from unittest import mock
    def full_disk(path, *a, **k): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    with mock.patch('opto_nb.design.atomic_write', full_disk):
        rc, _, err = in_process('design', '--rl-steps', 1, '--out', tmp_path / 'full', *SMALL, capsys=capsys)
    assert rc == 1 and f"cannot write {tmp_path / 'full' / 'config.json'}: no space left" in err, err


def mounted_tmpfs(folder: Path, options: str) -> bool:
    "Mount a real tmpfs on `folder` (root with the right to mount only); False where this machine does not allow it."
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which('mount'): return False
    return subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(folder)],
                          capture_output=True).returncode == 0


@pytest.fixture
def tmpfs(tmp_path):
    "A function mounting a real tmpfs with the given options; every mount is undone after the test."
    mounts = []
    def mount(name, options):
        folder = tmp_path / name
        if not mounted_tmpfs(folder, options):
            pytest.skip("this machine does not let the test mount a tmpfs (needs root with CAP_SYS_ADMIN); "
                        "test_run_errors simulates ENOSPC at the file layer instead")
        mounts.append(folder)
        return folder
    yield mount
    for folder in mounts: subprocess.run(['umount', '-l', str(folder)], capture_output=True)


def test_full_filesystem(tmpfs):
    "A real 5 MB filesystem fills up at the first checkpoint: one line naming the file and the cause, no traceback."
    full = tmpfs('full', 'size=5m')
    r = opto_nb('design', '--rl-steps', 3, '--checkpoint-every', 1, '--out', full / 'run', *SMALL)
    assert r.returncode == 1 and 'no space left on the device' in r.stderr and str(full / 'run') in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr
    assert json.loads((full / 'run' / 'config.json').read_text())['rl_steps'] == 3   # what was written is whole
    assert not list((full / 'run').rglob('*.tmp'))                                  # the cut-short write is gone


def test_read_only_folder(tmp_path, tmpfs):
    "A run folder in a read-only place: a real read-only filesystem as root, a folder without write permission else."
    if os.geteuid() == 0:
        ro, cause = tmpfs('ro', 'size=1m,ro'), 'the file system is read-only'
        r = opto_nb('design', '--rl-steps', 1, '--out', ro / 'run', *SMALL)
    else:
        ro, cause = tmp_path / 'ro', 'permission denied'
        ro.mkdir()
        ro.chmod(0o555)
        try: r = opto_nb('design', '--rl-steps', 1, '--out', ro / 'run', *SMALL)
        finally: ro.chmod(0o755)
    assert r.returncode == 1 and str(ro / 'run') in r.stderr and cause in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr


def test_missing_rdkit(tmp_path):
    # a stand-in `rdkit` package that cannot be imported, first on the path: as if the chem extra were not installed
    fake = tmp_path / 'fake' / 'rdkit'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text("raise ImportError('No module named rdkit (test stand-in)')\n")
    paths = [str(fake.parent)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
    r = opto_nb('design', '--out', tmp_path / 'run', env={'PYTHONPATH': os.pathsep.join(paths)})
    assert r.returncode == 1 and 'pip install "opto_nb[chem]"' in r.stderr, r.stderr
    assert not (tmp_path / 'run').exists()
