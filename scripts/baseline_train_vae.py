"""Snakemake script (rule baseline_train_vae): train the VAE, fit the x9 latent prior, Figs. 2-3."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from baseline_common import baseline_rule  # noqa: E402

with baseline_rule(snakemake) as settings:  # noqa: F821
    from astrorim.baseline.stages import train_vae_stage

    out = snakemake.output  # noqa: F821
    info = train_vae_stage(settings, snakemake.input.data, out.model, out.history, out.fig_recon,  # noqa: F821
                           out.fig_rotation, out.fig_elbo)
    h = info["history"]
    print(f"trained {len(h['val_elbo'])} epochs in {h['wall_s']:.1f} s; best epoch {h['best_epoch']}, "
          f"test ELBO {info['test_elbo']:.1f} nats/image")
