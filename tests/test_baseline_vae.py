"""The source VAE: Table D1/D2 shapes, the closed-form KL, the ELBO falling during training, the x9 prior."""

import dataclasses

import numpy as np
import pytest
import torch

from astrorim.baseline.latent_prior import LatentPrior, encode_means, fit_latent_prior
import astrorim.baseline.train_vae as train_vae_module
from astrorim.baseline.train_vae import TrainConfig, random_dihedral, train_vae
from astrorim.baseline.vae import VAE, Decoder, Encoder, VAEConfig, elbo, gaussian_kl_to_standard
from astrorim.train.state import ConfigMismatchError


def blobs(n, seed=0):
    """n peak-normalised elliptical Gaussian blobs on 64 x 64 (a tiny, learnable image set)."""
    rng = np.random.default_rng(seed)
    c = np.arange(64) - 31.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    out = []
    for _ in range(n):
        x0, y0 = rng.uniform(-6, 6, 2)
        sx, sy = rng.uniform(3, 9, 2)
        out.append(np.exp(-0.5 * (((xx - x0) / sx) ** 2 + ((yy - y0) / sy) ** 2)))
    return np.stack(out).astype(np.float32)


def test_paper_architecture_shapes_and_sizes():
    enc, dec = Encoder(64, 64), Decoder(64, 64)
    x = torch.rand(2, 1, 64, 64)
    mu, log_sigma = enc(x)
    assert mu.shape == log_sigma.shape == (2, 64)
    assert torch.all(torch.isfinite(log_sigma))
    # Table D1: the last convolution maps 512 channels to 4096 features, the heads 4096 -> 64.
    assert enc.features[-2].weight.shape == (4096, 512, 4, 4)
    assert enc.mean.weight.shape == enc.log_sigma.weight.shape == (64, 4096)
    with torch.no_grad():
        img = dec.eval()(torch.randn(3, 64))
    assert img.shape == (3, 64, 64)
    assert float(img.abs().max()) <= 1.0  # tanh output (Table D2)
    assert all(m.bias is None for m in dec.modules() if isinstance(m, torch.nn.ConvTranspose2d))


def test_wrong_input_shapes_are_rejected():
    vae = VAE(VAEConfig(width=4))
    with pytest.raises(ValueError, match="encoder input"):
        vae.encode(torch.rand(2, 32, 32))
    with pytest.raises(ValueError, match="decoder input"):
        vae.decoder(torch.rand(2, 10))


def test_kl_matches_torch_distributions():
    mu, sigma = torch.randn(5, 7), torch.rand(5, 7) + 0.1
    q = torch.distributions.Normal(mu, sigma)
    p = torch.distributions.Normal(torch.zeros(7), torch.ones(7))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    assert torch.allclose(gaussian_kl_to_standard(mu, sigma.log()), expected, atol=1e-5)


def test_kl_and_elbo_stay_finite_when_the_encoder_scale_underflows():
    """An encoder sure of a latent drives log sigma below -104, where exp underflows float32 to 0: the KL is then
    0.5 (mu^2 - 1 - 2 log sigma) per latent, finite with a finite gradient (the width-64 VAE's training skipped
    most minibatches from its 16th epoch when the KL took log(exp(log sigma)))."""
    log_sigma = torch.full((2, 3), -120.0, requires_grad=True)
    mu = torch.tensor([[0.0, 1.0, -2.0], [0.5, 0.0, 0.0]])
    assert float(torch.exp(log_sigma.detach()[0, 0])) == 0.0  # the premise: sigma underflows
    kl = gaussian_kl_to_standard(mu, log_sigma)
    expected = 0.5 * (mu.pow(2) - 1.0 + 240.0).sum(-1)
    torch.testing.assert_close(kl, expected)
    kl.sum().backward()
    torch.testing.assert_close(log_sigma.grad, torch.full((2, 3), -1.0))
    vae = VAE(VAEConfig(width=4)).eval()
    with torch.no_grad():
        vae.encoder.log_sigma.weight.zero_()
        vae.encoder.log_sigma.bias.fill_(-150.0)
    value = elbo(vae, torch.as_tensor(blobs(2)), generator=torch.Generator().manual_seed(0))
    assert torch.all(torch.isfinite(value))
    mu_e, sigma_e = vae.encode(torch.as_tensor(blobs(2)))
    assert torch.all(sigma_e == 0.0) and torch.all(torch.isfinite(mu_e))


def test_elbo_is_per_image_and_penalises_bad_reconstructions():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(width=4)).eval()
    x = torch.as_tensor(blobs(3))
    val = elbo(vae, x, particles=2, generator=torch.Generator().manual_seed(1))
    assert val.shape == (3,)
    worse = elbo(vae, x + 0.5, particles=2, generator=torch.Generator().manual_seed(1))
    assert torch.all(worse < val)


def test_training_increases_the_elbo_on_a_tiny_set():
    train, val = blobs(24, seed=1), blobs(8, seed=2)
    vae, hist = train_vae(train, val, VAEConfig(width=4, decoder_sigma=0.05),
                          TrainConfig(lr=3e-3, batch_size=8, max_epochs=6, patience=6, seed=0), progress=False)
    assert len(hist.train_elbo) == 6
    assert hist.train_elbo[-1] > hist.train_elbo[0] + 0.1 * abs(hist.train_elbo[0])
    assert max(hist.val_elbo) > hist.val_elbo[0]
    assert not vae.training
    assert hist.learning_rate == pytest.approx([3e-3] * 6)


def test_learning_rate_anneals_on_a_cosine_to_the_final_factor():
    train, val = blobs(16, seed=1), blobs(4, seed=2)
    lr, factor, epochs = 3e-3, 0.1, 5
    _, hist = train_vae(train, val, VAEConfig(width=4, decoder_sigma=0.05),
                        TrainConfig(lr=lr, lr_final_factor=factor, batch_size=8, max_epochs=epochs, patience=epochs,
                                    seed=0), progress=False)
    floor = lr * factor
    expected = [floor + (lr - floor) * (1 + np.cos(np.pi * e / epochs)) / 2 for e in range(epochs)]
    assert hist.learning_rate == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("factor", [0.0, -0.5, 1.5])
def test_a_final_learning_rate_factor_outside_zero_one_is_rejected(factor):
    with pytest.raises(ValueError, match="lr_final_factor"):
        TrainConfig(lr=1e-3, lr_final_factor=factor)


def test_latent_prior_is_the_encoded_means_gaussian_with_covariance_times_nine():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 4))
    means = rng.standard_normal((500, 4)) @ a.T + np.array([1.0, -2.0, 0.5, 3.0])
    prior = fit_latent_prior(means)
    emp_cov = np.cov(means, rowvar=False, bias=True)
    np.testing.assert_allclose(prior.mean.numpy(), means.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(prior.cov.numpy(), 9.0 * emp_cov, rtol=1e-4, atol=1e-4)
    assert prior.cov_factor == 9.0
    # whitening: eps ~ N(0, I) maps onto N(mean, cov), and back
    eps = torch.randn(20000, 4, generator=torch.Generator().manual_seed(0))
    z = prior.latent_from_white(eps)
    np.testing.assert_allclose(np.cov(z.numpy(), rowvar=False), prior.cov.numpy(), rtol=0.06, atol=0.1)
    assert torch.allclose(prior.white_from_latent(z[:5]), eps[:5], atol=1e-4)
    restored = LatentPrior.from_state_dict(prior.state_dict())
    assert torch.equal(restored.cov, prior.cov)


def test_encode_means_runs_in_eval_mode_and_restores_training_flag():
    vae = VAE(VAEConfig(width=4))
    vae.train()
    mu = encode_means(vae, blobs(5))
    assert mu.shape == (5, 64) and vae.training


def _dihedral_images(image: torch.Tensor) -> list[torch.Tensor]:
    return [torch.rot90(im, k, dims=(-2, -1)) for im in (image, image.flip(-1)) for k in range(4)]


def test_dihedral_augmentation_shows_each_image_in_one_of_its_eight_symmetries():
    images = torch.as_tensor(blobs(64, seed=3))
    images[:, :20, :9] += 1.0  # an asymmetric mark, so that all 8 transforms differ
    out = random_dihedral(images.clone(), torch.Generator().manual_seed(0))
    seen = set()
    for original, shown in zip(images, out):
        matches = [i for i, t in enumerate(_dihedral_images(original)) if torch.equal(t, shown)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(range(8))
    again = random_dihedral(images.clone(), torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_training_with_dihedral_augmentation_is_deterministic_and_validated():
    train, val = blobs(16, seed=1), blobs(4, seed=2)
    config = TrainConfig(lr=3e-3, augment="dihedral", batch_size=8, max_epochs=2, patience=2, seed=0)
    runs = [train_vae(train, val, VAEConfig(width=4, decoder_sigma=0.05), config, progress=False)[1] for _ in range(2)]
    assert runs[0].train_elbo == runs[1].train_elbo
    plain = train_vae(train, val, VAEConfig(width=4, decoder_sigma=0.05),
                      TrainConfig(lr=3e-3, batch_size=8, max_epochs=2, patience=2, seed=0), progress=False)[1]
    assert plain.train_elbo != runs[0].train_elbo
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(augment="rotate")


RESUME_CONFIG = TrainConfig(lr=3e-3, lr_final_factor=0.2, augment="dihedral", batch_size=8, max_epochs=4, patience=4,
                            seed=0)


def _interrupt_validation_after(monkeypatch, n_calls):
    """Make the n_calls+1-th validation raise KeyboardInterrupt (the epochs before it complete and are saved)."""
    real, calls = train_vae_module.mean_elbo, []

    def interrupting(*args, **kwargs):
        if len(calls) == n_calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(train_vae_module, "mean_elbo", interrupting)


def _same_run(a, b):
    (vae_a, hist_a), (vae_b, hist_b) = a, b
    assert {k: v for k, v in hist_a.to_dict().items() if k != "wall_s"} == \
        {k: v for k, v in hist_b.to_dict().items() if k != "wall_s"}
    state_a, state_b = vae_a.state_dict(), vae_b.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_interrupted_vae_training_resumes_bit_for_bit(tmp_path, monkeypatch):
    train, val = blobs(20, seed=1), blobs(6, seed=2)
    vae_config = VAEConfig(width=4, decoder_sigma=0.05)
    straight = train_vae(train, val, vae_config, RESUME_CONFIG, progress=False)
    state = tmp_path / "resume" / "state.pt"
    with monkeypatch.context() as patch:
        _interrupt_validation_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            train_vae(train, val, vae_config, RESUME_CONFIG, progress=False, resume_path=state)
    assert len(torch.load(state, weights_only=False)["history"]["val_elbo"]) == 2  # two epochs saved
    resumed = train_vae(train, val, vae_config, RESUME_CONFIG, progress=False, resume_path=state)
    assert len(resumed[1].val_elbo) == 4
    _same_run(straight, resumed)
    # A finished state is not trained further: rerunning returns the same model without a single epoch.
    _interrupt_validation_after(monkeypatch, 0)
    _same_run(straight, train_vae(train, val, vae_config, RESUME_CONFIG, progress=False, resume_path=state))


@pytest.mark.parametrize("change, key", [("lr", "train.lr"), ("data", "data_sha256"), ("width", "vae.width")])
def test_vae_training_state_of_another_setup_is_refused(tmp_path, change, key):
    train, val = blobs(12, seed=1), blobs(4, seed=2)
    config = TrainConfig(lr=3e-3, batch_size=8, max_epochs=1, patience=1, seed=0)
    state = tmp_path / "state.pt"
    train_vae(train, val, VAEConfig(width=4, decoder_sigma=0.05), config, progress=False, resume_path=state)
    vae_config = VAEConfig(width=8 if change == "width" else 4, decoder_sigma=0.05)
    config = TrainConfig(lr=1e-3, batch_size=8, max_epochs=1, patience=1, seed=0) if change == "lr" else config
    images = blobs(12, seed=5) if change == "data" else train
    with pytest.raises(ConfigMismatchError, match=key) as err:
        train_vae(images, val, vae_config, config, progress=False, resume_path=state)
    assert str(state) in str(err.value)


def test_a_device_that_is_not_auto_cpu_or_cuda_is_rejected():
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="gpu")
    assert TrainConfig(device="cuda:1").device == "cuda:1"


def test_the_history_records_the_device_auto_chose():
    _, history = train_vae(blobs(12, seed=1), blobs(4, seed=2), VAEConfig(width=4, decoder_sigma=0.05),
                           TrainConfig(lr=3e-3, batch_size=8, max_epochs=1, patience=1, device="auto"), progress=False)
    assert history.device == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_training_on_cuda_without_a_gpu_names_the_setting():
    with pytest.raises(RuntimeError, match="baseline.vae.device is 'cuda'"):
        train_vae(blobs(12, seed=1), blobs(4, seed=2), VAEConfig(width=4, decoder_sigma=0.05),
                  TrainConfig(lr=3e-3, batch_size=8, max_epochs=1, patience=1, device="cuda"), progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_on_cuda_matches_the_cpu_and_hands_back_a_cpu_model(tmp_path, monkeypatch):
    """The same minibatches, noise and augmentation on either device (the random streams stay on the CPU
    generator), so the runs agree to the devices' float32 round-off; a state written on the GPU resumes on
    the CPU."""
    train, val = blobs(20, seed=1), blobs(6, seed=2)
    vae_config = VAEConfig(width=4, decoder_sigma=0.05)
    cpu_vae, cpu_hist = train_vae(train, val, vae_config, RESUME_CONFIG, progress=False)
    gpu_config = dataclasses.replace(RESUME_CONFIG, device="cuda")
    gpu_vae, gpu_hist = train_vae(train, val, vae_config, gpu_config, progress=False)
    assert all(p.device.type == "cpu" for p in gpu_vae.parameters())
    assert gpu_hist.device.startswith("cuda") and cpu_hist.device == "cpu"
    np.testing.assert_allclose(gpu_hist.val_elbo, cpu_hist.val_elbo, rtol=2e-2)  # TF32 convolutions
    state = tmp_path / "state.pt"
    with monkeypatch.context() as patch:
        _interrupt_validation_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            train_vae(train, val, vae_config, gpu_config, progress=False, resume_path=state)
    _, resumed = train_vae(train, val, vae_config, RESUME_CONFIG, progress=False, resume_path=state)
    assert len(resumed.val_elbo) == 4 and np.all(np.isfinite(resumed.val_elbo))


def test_a_file_that_is_not_a_vae_training_state_is_refused(tmp_path):
    state = tmp_path / "state.pt"
    torch.save({"format": "something else"}, state)
    with pytest.raises(ValueError, match="not a VAE training state"):
        train_vae(blobs(12, seed=1), blobs(4, seed=2), VAEConfig(width=4, decoder_sigma=0.05),
                  TrainConfig(lr=3e-3, batch_size=8, max_epochs=1, patience=1, seed=0), progress=False,
                  resume_path=state)


def _nonfinite_training_losses(monkeypatch, bad_calls):
    """Make the training-mode ELBO calls whose index is in ``bad_calls`` (a container) run on non-finite images
    (which also poisons BatchNorm's running statistics) and return a non-finite loss."""
    real, calls = train_vae_module.elbo, []

    def patched(vae, images, *args, **kwargs):
        if vae.training:
            calls.append(1)
            if len(calls) - 1 in bad_calls:
                return real(vae, images * float("inf"), *args, **kwargs)
        return real(vae, images, *args, **kwargs)
    monkeypatch.setattr(train_vae_module, "elbo", patched)


def test_a_minibatch_with_a_nonfinite_loss_is_skipped_and_counted(monkeypatch):
    train, val = blobs(20, seed=1), blobs(6, seed=2)
    config = TrainConfig(lr=3e-3, batch_size=8, max_epochs=2, patience=2, seed=0)
    clean = train_vae(train, val, VAEConfig(width=4, decoder_sigma=0.05), config, progress=False)[1]
    _nonfinite_training_losses(monkeypatch, {1})
    vae, hist = train_vae(train, val, VAEConfig(width=4, decoder_sigma=0.05), config, progress=False)
    assert clean.skipped_batches == [0, 0] and hist.skipped_batches == [1, 0]
    assert all(np.isfinite(hist.train_elbo)) and hist.train_elbo[0] != clean.train_elbo[0]
    assert all(np.isfinite(hist.val_elbo)) and all(torch.isfinite(b).all() for b in vae.buffers())
    assert clean.clipped_batches == hist.clipped_batches == [0, 0]


def test_gradient_clipping_caps_the_norm_and_counts_the_clipped_minibatches(monkeypatch):
    train, val = blobs(20, seed=1), blobs(6, seed=2)
    norms, real_clip = [], torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        total = real_clip(parameters, max_norm, *args, **kwargs)
        norms.append((float(total), float(torch.sqrt(sum((p.grad ** 2).sum() for p in parameters)))))
        return total
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    runs = {clip: train_vae(train, val, VAEConfig(width=4, decoder_sigma=0.05),
                            TrainConfig(lr=3e-3, batch_size=8, max_epochs=2, patience=2, grad_clip=clip, seed=0),
                            progress=False)[1] for clip in (0.0, 50.0)}
    unclipped, clipped = norms[:6], norms[6:]
    assert all(after == pytest.approx(before, rel=1e-5) for before, after in unclipped)
    assert all(after <= 50.0 * (1 + 1e-5) for _, after in clipped) and max(b for b, _ in clipped) > 50.0
    assert runs[0.0].clipped_batches == [0, 0]
    assert sum(runs[50.0].clipped_batches) == sum(before > 50.0 for before, _ in clipped) > 0
    assert runs[50.0].train_elbo != runs[0.0].train_elbo
    with pytest.raises(ValueError, match="invalid VAE training configuration"):
        TrainConfig(grad_clip=-1.0)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no step is taken
def test_training_stops_after_too_many_nonfinite_losses_in_a_row(monkeypatch):
    _nonfinite_training_losses(monkeypatch, range(10 ** 6))
    with pytest.raises(FloatingPointError, match=f"not finite in {train_vae_module.MAX_CONSECUTIVE_SKIPS} minibatches"):
        train_vae(blobs(20, seed=1), blobs(6, seed=2), VAEConfig(width=4, decoder_sigma=0.05),
                  TrainConfig(lr=3e-3, batch_size=8, max_epochs=10, patience=10, seed=0), progress=False)
