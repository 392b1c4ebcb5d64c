"""Datasets: pixel datasets and VAE latent caches, built by name in registry.py."""
