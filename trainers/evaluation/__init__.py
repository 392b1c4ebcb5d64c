"""Evaluation: sampling for evaluation, feature sets (Inception, domain classifier), FID / IS /
precision-recall, run artifacts and CKA analysis."""
