"""Synthetic benchmark tables: the best detector of each family per severity and type."""

from vaelab.experiments.synthetic_tables import best_per_type


def test_best_per_type_picks_each_familys_maximum():
    rows = [{"severity": 1.0, "type": "noise", "detector": d, "latent_dim": z, "auroc": a}
            for d, z, a in (("vae-iwae", 5, 0.9), ("vae-elbo", 3, 0.95), ("raw-kde", 0, 0.7), ("latent-gmm", 5, 0.8))]
    (best,) = best_per_type(rows)
    assert best["vae"] == {"detector": "vae-elbo", "latent_dim": 3, "auroc": 0.95}
    assert best["raw"]["detector"] == "raw-kde" and best["latent"]["auroc"] == 0.8 and "fusion" not in best
