"""The paper-003 baseline: a VAE source prior + power-law lens in Pyro, MAP fits and NUTS posteriors.

Chianese, Coogan, Hofma, Otten & Weniger, "Differentiable strong lensing" (paper 003), as a baseline for
AstroRIM.  Modules, one job each:

    vae, train_vae, latent_prior   the source VAE (Tables D1-D2), its ELBO training, the x9 latent prior (§2)
    hdf, data                      the VAE training images (simulator sources + Hubble Deep Field cutouts)
    lens_model, source_model       EPL + shear deflection (§3.2); the placed, scaled decoder stamp (eq. 17)
    forward                        parameters -> PSF-convolved image (eqs. 6-9)
    distributions, priors          truncated normals; the priors of eqs. 14-16 and 18-23 with valid supports
    pyro_model                     the Pyro model (Gaussian likelihood), batched over starts
    map_fit, nuts                  multi-start MAP by Adam (§5.2); NUTS from the MAP (§5.3)
    snr, mocks                     S/N of eqs. 24-25; mock systems 1 and 2 (§5.1)
    summary, corner, plots,        accuracy tables, Figs. 2-3 and 6-9
    validation
    compare                        fit_image(): the hook for the AstroRIM comparison, and its table/figure
    settings, stages, io           the ``baseline:`` config section, the workflow steps, atomic artefacts

See docs/baseline.md for conventions and deviations from the paper, docs/baseline-findings.md for the measured numbers.
"""
