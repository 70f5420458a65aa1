"""End-to-end dashboard test in a real browser: Voila serves tests/dashboard_app.ipynb (a small model training with the
dashboard attached) on 127.0.0.1 and headless Debian Chromium, driven by playwright, checks that the numbers and the
plot update while training runs and that the stop button stops training. Writes test-artifacts/dashboard.png."""
import os, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from conftest import ROOT

CHROMIUM = Path('/usr/bin/chromium')
APP = ROOT / 'tests' / 'dashboard_app.ipynb'
ARTIFACT = ROOT / 'test-artifacts' / 'dashboard.png'
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run']

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason='Debian chromium is not installed at /usr/bin/chromium '
                                '(CI installs it with apt; locally: apt-get install chromium)')

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def _wait_http(url, proc, deadline):
    "Poll `url` until it answers, Voila exits, or `deadline` passes."
    while time.monotonic() < deadline:
        if proc.poll() is not None: raise RuntimeError(f'voila exited early with code {proc.returncode}')
        try:
            with urllib.request.urlopen(url, timeout=2): return
        except Exception: time.sleep(0.25)
    raise TimeoutError(f'voila did not answer at {url} in time')

def _step(page) -> int:
    txt = page.inner_text('.opto-numbers .opto-step')
    return int(txt) if txt.strip().isdigit() else -1

def _poll(fn, deadline, every=0.2):
    "Call `fn` until it returns a truthy value or `deadline` passes; return the last value."
    while True:
        v = fn()
        if v or time.monotonic() > deadline: return v
        time.sleep(every)

@pytest.mark.timeout(150)
def test_dashboard_in_browser(tmp_path):
    from playwright.sync_api import sync_playwright
    t_start = time.monotonic()
    deadline = t_start + 85
    port = _free_port()
    log = open(tmp_path / 'voila.log', 'w')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    env.pop('IN_TEST', None)
    # own process group: the kernel Voila starts is killed with it
    proc = subprocess.Popen([sys.executable, '-m', 'voila', '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1',
                             '--ServerApp.open_browser=False', str(APP.relative_to(ROOT))],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f'http://127.0.0.1:{port}/'
        _wait_http(url, proc, t_start + 40)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            try:
                page = browser.new_page(viewport={'width': 1280, 'height': 900})
                page.goto(url, timeout=60_000)
                # the kernel ran the notebook: the dashboard is there and training has started
                page.wait_for_selector('.opto-numbers .opto-step', timeout=max(1, deadline - time.monotonic()) * 1000)
                assert _poll(lambda: _step(page) > 0, deadline), 'training never reported a step'
                s1 = _step(page)
                img = '.opto-panel-rewards img'
                page.wait_for_selector(img, timeout=max(1, deadline - time.monotonic()) * 1000)
                src1 = page.get_attribute(img, 'src')
                # numbers and the plot change while training runs
                assert _poll(lambda: _step(page) > s1 + 5, deadline), f'step did not advance past {s1}'
                assert _poll(lambda: page.get_attribute(img, 'src') != src1,
                             deadline), 'the rewards plot was not redrawn'
                assert 'running' in page.inner_text('.opto-status')
                # the stop button ends training at the next batch boundary
                page.click('.opto-stop')
                assert _poll(lambda: 'stopped' in page.inner_text('.opto-status'), deadline), \
                    f"status after stop: {page.inner_text('.opto-status')!r}"
                assert 'checkpoint: ' in page.inner_text('.opto-status'), 'no checkpoint was written on stop'
                s_stop = _step(page)
                time.sleep(1.5)
                assert _step(page) == s_stop, 'training went on after the stop button'
                ARTIFACT.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACT), full_page=True)
                # the sample explorer lists the best samples with their scores and sources
                page.click('.lm-TabBar-tab >> text=samples')
                page.wait_for_selector('.opto-samples tbody tr', timeout=max(1, deadline - time.monotonic()) * 1000)
                rows = page.locator('.opto-samples tbody tr')
                assert rows.count() >= 5 and 'policy' in rows.first.inner_text()
            finally:
                browser.close()
        assert ARTIFACT.stat().st_size > 10_000
        assert time.monotonic() - t_start < 90, 'the browser test took longer than its 90 s budget'
    finally:
        try: os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError: pass
        try: proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
