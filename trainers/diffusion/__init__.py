"""Diffusion maths: the Gaussian diffusion (schedules, q_sample, losses), samplers, loss
weightings and interval clustering of timesteps."""
