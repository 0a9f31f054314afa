"""Progress of long work: timed lines with done/total and ETA in a log, a tqdm bar on a terminal; used by
shard simulation and the reference fits."""

import io
import re

import pytest

import astrorim.progress
from astrorim.progress import Progress, format_duration


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_lines_every_interval_with_eta():
    clock, log = _Clock(), io.StringIO()
    with Progress(10, "job", unit="pair", interval_s=30, stream=log, clock=clock) as progress:
        for _ in range(10):
            clock.t += 10.0
            progress.update()
    lines = log.getvalue().splitlines()
    assert lines[0] == "job: 0/10 pair started"
    # a line at 30 s, 60 s, 90 s (not after every update), then the final one
    assert lines[1] == "job: 3/10 pair (30%), 30s elapsed, ETA 1m10s"
    assert lines[2] == "job: 6/10 pair (60%), 1m00s elapsed, ETA 40s"
    assert lines[3] == "job: 9/10 pair (90%), 1m30s elapsed, ETA 10s"
    assert lines[4] == "job: 10/10 pair (100%), 1m40s elapsed, finished"
    assert len(lines) == 5


def test_tqdm_bar_on_a_terminal():
    tty = _Tty()
    with Progress(5, "job", unit="pair", stream=tty) as progress:
        for _ in range(5):
            progress.update()
    text = tty.getvalue()
    assert "started" not in text and "5/5" in text and "pair" in text  # tqdm's bar, not our lines


def test_format_duration():
    assert [format_duration(s) for s in (4.4, 65, 3600 + 7 * 60 + 3)] == ["4s", "1m05s", "1h07m"]


def test_simulation_reports_progress_in_a_log(capsys, monkeypatch):
    from astrorim.sim import simulate

    monkeypatch.setattr(astrorim.progress, "DEFAULT_INTERVAL_S", 0.0)
    simulate("v1", 3, 0, npix=32, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "simulate v1 initial/train: 0/3 pair started"
    assert re.fullmatch(r"simulate v1 initial/train: 1/3 pair \(33%\), \d+s elapsed, ETA \d+s", lines[1])
    assert re.fullmatch(r"simulate v1 initial/train: 3/3 pair \(100%\), \d+s elapsed, finished", lines[-1])


def test_simulate_shard_rule_asks_for_progress():
    from pathlib import Path

    script = (Path(__file__).resolve().parents[1] / "scripts" / "simulate_shard.py").read_text()
    assert "progress=True" in script


def test_reference_fit_reports_progress(tmp_path, capsys, monkeypatch):
    from test_real_reference_fit import _simulate

    from astrorim.real.ingest import find_lens_centre, read_native
    from astrorim.real.point_sources import find_point_images
    from astrorim.real.reference_fit import ReferenceFitSettings, fit_reference

    paths, _ = _simulate(tmp_path)
    native = read_native(paths["image"], noise_path=paths["noise"], psf_path=paths["psf"])
    centre = find_lens_centre(native, 0.44)
    images = find_point_images(native, centre, 1.1).images
    capsys.readouterr()
    monkeypatch.setattr(astrorim.progress, "DEFAULT_INTERVAL_S", 0.0)
    settings = ReferenceFitSettings(n_particles=6, n_iterations=3, mcmc_walker_ratio=2, mcmc_n_burn=2,
                                    mcmc_n_run=2, n_theta_samples=10, seed=1)
    fit_reference(native, centre, images, 1.1, settings)
    lines = capsys.readouterr().err.splitlines()
    progress = [ln for ln in lines if ln.startswith("reference fit image.fits: ")]
    total = int(re.search(r"/(\d+) ", progress[0]).group(1))
    assert progress[0].endswith("likelihood evaluations started") and total > 6 * 4
    done = [int(re.search(r": (\d+)/", ln).group(1)) for ln in progress[1:]]
    assert done == sorted(done) and len(done) > 10 and "ETA" in progress[len(progress) // 2]
    assert progress[-1].endswith("finished") and done[-1] > 0.9 * total
