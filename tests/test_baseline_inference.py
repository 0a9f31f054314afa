"""MAP and NUTS on a small noiseless mock with a known lens: convergence direction, batching, determinism."""

import numpy as np
import pytest
import torch

from astrorim.baseline.map_fit import MapConfig, initial_values, run_map, run_map_batch
from astrorim.baseline.mocks import observe
from astrorim.baseline.nuts import NutsConfig, run_nuts, unconstrained_init
from astrorim.baseline.priors import LATENT_SITE, PRIORS
from astrorim.baseline.pyro_model import LensingModel, log_joint

from test_baseline_model import small_model

TRUTH = dict(gamma1=0.02, gamma2=-0.01, phi=0.4, q=0.8, r_ein=1.2, slope=2.0, x_lens=0.05, y_lens=-0.05,
             x_src=0.05, y_src=0.0, scale=3.0, iota=1.0)


def truth_values(n=1, **override):
    vals = {k: torch.full((n,), float(override.get(k, v))) for k, v in TRUTH.items()}
    vals[LATENT_SITE] = torch.zeros(n, 64)
    return vals


@pytest.fixture(scope="module")
def mock():
    model = small_model()
    with torch.no_grad():
        obs = model.forward(truth_values(), torch.zeros(1, 64))[0]
    return model, obs


def test_map_moves_towards_the_truth(mock):
    model, obs = mock
    init = truth_values(r_ein=1.45, x_lens=-0.1, slope=2.15)
    res = run_map(model, obs, MapConfig(steps=80, n_starts=1, lr=0.02, lr_final_factor=0.5, record_every=20),
                  init=init, progress=False)
    best = res.best_params()
    for name, start in (("r_ein", 1.45), ("x_lens", -0.1)):
        assert abs(best[name] - TRUTH[name]) < 0.3 * abs(start - TRUTH[name]), name
    assert abs(best["slope"] - TRUTH["slope"]) < abs(2.15 - TRUTH["slope"])
    logp = np.asarray(res.history_log_joint)[:, 0]
    assert logp[-1] > logp[0]
    assert res.values["z"].shape == (1, 64)


def test_batched_starts_are_independent_fits(mock):
    # Adam is element-wise and nothing couples the starts, so a 2-start run equals two 1-start runs up to
    # float32 round-off (the EPL series length follows the batch's largest ellipticity), which Adam's
    # normalised early steps can amplify to ~1e-3 of the distance travelled.
    model, obs = mock
    cfg = MapConfig(steps=15, n_starts=2, lr=0.02, record_every=0, seed=3)
    init2 = initial_values(model, 2, 0.3, seed=5)
    both = run_map(model, obs, cfg, init=init2, progress=False)
    for k in range(2):
        single = run_map(model, obs, MapConfig(steps=15, n_starts=1, lr=0.02, record_every=0, seed=3),
                         init={n: v[k:k + 1] for n, v in init2.items()}, progress=False)
        for name in ("r_ein", "phi", "x_src"):
            moved = abs(float(init2[name][k]) - float(single.values[name][0]))
            assert both.values[name][k] == pytest.approx(single.values[name][0], abs=0.02 * moved + 1e-5)


def test_systems_batched_in_one_pass_are_fitted_as_if_alone(mock):
    """Two systems (other lenses, other noise levels) in one plate: each gets the starts and the result of
    its own unbatched fit, and its own noise sigma in the likelihood."""
    model, _ = mock
    lenses = [dict(r_ein=1.2, phi=0.4, q=0.8), dict(r_ein=1.5, phi=-0.5, q=0.65, x_src=-0.1)]
    sigmas = [0.05, 0.2]
    images = []
    for k, (lens, sigma) in enumerate(zip(lenses, sigmas)):
        with torch.no_grad():
            clean = model.forward(truth_values(**lens), torch.zeros(1, 64))[0].numpy()
        images.append(torch.as_tensor(observe(clean, sigma, seed=k)))
    cfg = MapConfig(steps=15, n_starts=2, lr=0.02, init_jitter=0.3, record_every=5, seed=3)
    batch = run_map_batch(model.forward, model.latent_prior, torch.stack(images), sigmas, cfg, progress=False)
    assert len(batch) == 2
    for image, sigma, fit in zip(images, sigmas, batch):
        own = LensingModel(model.forward, model.latent_prior, sigma)
        alone = run_map(own, image, cfg, progress=False)
        start = initial_values(own, 2, cfg.init_jitter, cfg.seed)
        for name in ("r_ein", "phi", "x_src"):
            moved = np.abs(start[name].numpy() - alone.values[name])
            assert np.all(np.abs(fit.values[name] - alone.values[name]) <= 0.02 * moved + 1e-5), name
        values = {k: torch.as_tensor(v) for k, v in fit.values.items()}
        np.testing.assert_allclose(fit.log_joint, log_joint(own, image, values).numpy(), rtol=1e-6)
        np.testing.assert_allclose(fit.log_joint, alone.log_joint, rtol=1e-5)
        assert fit.best == int(np.argmax(fit.log_joint))
        assert np.asarray(fit.history_log_joint).shape == (len(fit.history_steps), 2)
        assert fit.values["z"].shape == (2, 64)


def test_batched_systems_need_one_noise_sigma_per_image(mock):
    model, obs = mock
    with pytest.raises(ValueError, match="one noise sigma each"):
        run_map_batch(model.forward, model.latent_prior, torch.stack([obs, obs]), [0.1], MapConfig(steps=1))
    with pytest.raises(ValueError, match="> 0"):
        LensingModel(model.forward, model.latent_prior, [0.1, 0.0])
    # one sigma is kept as given (not rounded to float32), so single-system fits are unchanged by the batching
    assert LensingModel(model.forward, model.latent_prior, 0.0333).noise_sigma == 0.0333
    two_sigmas = LensingModel(model.forward, model.latent_prior, [0.1, 0.2])
    with pytest.raises(ValueError, match="2 noise sigmas for 3 plate elements"):
        two_sigmas(obs, 3)
    with pytest.raises(ValueError, match="2 images for 3 starts"):
        run_map(model, torch.stack([obs, obs]), MapConfig(steps=1, n_starts=3), progress=False)


def test_map_is_deterministic_given_the_seed(mock):
    model, obs = mock
    cfg = MapConfig(steps=5, n_starts=3, record_every=0, seed=11)
    a = run_map(model, obs, cfg, progress=False)
    b = run_map(model, obs, cfg, progress=False)
    for name in a.values:
        np.testing.assert_array_equal(a.values[name], b.values[name])
    c = run_map(model, obs, MapConfig(steps=5, n_starts=3, record_every=0, seed=12), progress=False)
    assert not np.array_equal(a.values["r_ein"], c.values["r_ein"])


def test_lbfgs_polish_climbs_where_a_short_adam_run_stopped(mock):
    """The polish continues the very fit Adam left (same start, same steps) and reaches a higher log
    posterior, closer to the truth; the Adam record stays Adam's, and the gain is reported per start."""
    model, obs = mock
    init = truth_values(n=2, r_ein=1.45, x_lens=-0.1, slope=2.15)
    init["phi"] = torch.tensor([0.6, 0.25])
    adam = MapConfig(steps=20, n_starts=2, lr=0.02, lr_final_factor=0.5, record_every=10)
    plain = run_map(model, obs, adam, init=init, progress=False)
    polished = run_map(model, obs, MapConfig(**{**adam.__dict__, "polish_iterations": 30}), init=init,
                       progress=False)
    assert plain.polish_gain is None
    assert polished.history_log_joint == plain.history_log_joint
    np.testing.assert_allclose(polished.log_joint - plain.log_joint, polished.polish_gain, atol=0.05)
    assert polished.polish_gain.sum() > 1.0
    assert polished.log_joint.max() > plain.log_joint.max()
    for name in ("r_ein", "phi"):
        assert abs(polished.best_params()[name] - TRUTH[name]) < abs(plain.best_params()[name] - TRUTH[name])


def test_a_polish_that_meets_a_non_finite_loss_keeps_the_adam_fit(mock, monkeypatch):
    import astrorim.baseline.map_fit as map_fit

    class NonFinite(map_fit.Trace_ELBO):
        def differentiable_loss(self, *args, **kwargs):
            return super().differentiable_loss(*args, **kwargs) * float("nan")

    model, obs = mock
    init = truth_values(r_ein=1.45)
    config = MapConfig(steps=5, n_starts=1, lr=0.02, record_every=0)
    plain = run_map(model, obs, config, init=init, progress=False)
    monkeypatch.setattr(map_fit, "Trace_ELBO", NonFinite)
    with pytest.warns(RuntimeWarning, match="keeps the Adam result"):
        polished = run_map(model, obs, MapConfig(**{**config.__dict__, "polish_iterations": 5}), init=init,
                           progress=False)
    assert polished.polish_gain.tolist() == [0.0]
    for name in plain.values:
        np.testing.assert_array_equal(polished.values[name], plain.values[name])


def test_map_leaves_the_callers_starting_values_untouched(mock):
    model, obs = mock
    init = truth_values(r_ein=1.45)
    before = {k: v.clone() for k, v in init.items()}
    run_map(model, obs, MapConfig(steps=5, n_starts=1, record_every=0), init=init, progress=False)
    for name, value in init.items():
        assert torch.equal(value, before[name]), name


def test_negative_polish_iterations_are_rejected():
    with pytest.raises(ValueError, match="polish_iterations"):
        MapConfig(polish_iterations=-1)


def test_initial_values_lie_inside_the_supports(mock):
    model, _ = mock
    init = initial_values(model, 50, jitter=3.0, seed=0)
    for name, spec in PRIORS.items():
        assert init[name][0] == pytest.approx(spec.clip(spec.loc, margin=0.01))
        if spec.low is not None:
            assert float(init[name].min()) > spec.low and float(init[name].max()) < spec.high


def test_nuts_runs_from_a_constrained_point_and_is_deterministic(mock):
    model, obs = mock
    noisy = torch.as_tensor(observe(obs.numpy(), 0.05, seed=0))
    init = {k: v.numpy() for k, v in truth_values().items()}
    cfg = NutsConfig(warmup=3, samples=4, max_tree_depth=2, seed=7)
    a = run_nuts(model, noisy, init, cfg, progress=False)
    b = run_nuts(model, noisy, init, cfg, progress=False)
    assert a.n_samples == 4 and a.samples["r_ein"].shape == (4,) and a.samples["z"].shape == (4, 64)
    for name in a.samples:
        np.testing.assert_array_equal(a.samples[name], b.samples[name])
    assert 0 < a.gradients_per_sample <= 2 ** 2 + 1
    assert 0 < a.diagnostics["mean_accept_prob"] <= 1  # read while sampling: Pyro zeroes it afterwards
    for name, spec in PRIORS.items():
        if spec.low is not None:
            assert spec.low <= a.samples[name].min() and a.samples[name].max() <= spec.high


def test_unconstrained_init_rejects_values_outside_the_support(mock):
    model, obs = mock
    init = {k: v.numpy() for k, v in truth_values().items()}
    init["q"] = np.array([1.5])
    with pytest.raises(ValueError, match="outside its support"):
        unconstrained_init(model, obs, init)


def test_late_gain_reads_the_best_starts_history():
    """The gain over the last tenth is the best start's final log posterior minus its last record at or before
    90 % of the steps; it is NaN when nothing was recorded that early."""
    from astrorim.baseline.map_fit import MapResult

    history = [[0.0, 5.0], [10.0, 50.0], [11.0, 80.0], [12.0, 95.0]]
    res = MapResult({}, np.array([12.0, 95.0]), best=1, steps=100, wall_s=1.0, history_steps=[0, 50, 90, 100],
                    history_log_joint=history)
    assert res.late_gain(0.1) == pytest.approx(15.0)
    assert res.late_gain(0.5) == pytest.approx(45.0)
    late_only = MapResult({}, np.array([1.0]), best=0, steps=100, wall_s=1.0, history_steps=[95, 100],
                          history_log_joint=[[0.0], [1.0]])
    assert np.isnan(late_only.late_gain(0.1))
