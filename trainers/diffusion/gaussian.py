"""Gaussian diffusion (epsilon prediction, optional learned variance) as in DDPM/ADM/DiT.

All schedule arrays are precomputed in float64 and cast to the data dtype on lookup.
Timestep indices ``t`` are int64 tensors of shape (N,) on this diffusion's own grid
(0 = least noisy).  Losses are returned per sample (shape (N,)); the caller applies
weights (``loss = w * mse + vb``), so each weight pairs with its own sample.
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "GaussianDiffusion",
    "get_beta_schedule",
    "normal_kl",
    "discretized_gaussian_log_likelihood",
    "mean_flat",
    "sample_timesteps_uniform",
    "sample_timesteps_stratified",
]


# ----------------------------------------------------------------------------- schedules
def get_beta_schedule(schedule: str, num_timesteps: int) -> torch.Tensor:
    """Betas (T,) float64. ``linear``: 1e-4..0.02 scaled by 1000/T (ADM);
    ``cosine``: Nichol & Dhariwal 2021, s = 0.008, betas capped at 0.999."""
    if not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise ValueError(f"num_timesteps must be an integer >= 1, got {num_timesteps!r}")
    T = num_timesteps
    if schedule == "linear":
        scale = 1000.0 / T
        return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64)
    if schedule == "cosine":
        def abar(u: float) -> float:
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = [min(1.0 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)]
        return torch.tensor(betas, dtype=torch.float64)
    raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")


# ----------------------------------------------------------------------------- helpers
def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension except the batch one -> (N,)."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """Elementwise KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, means, log_scales) -> torch.Tensor:
    """Elementwise log-likelihood (nats) of data in [-1, 1] quantised to 256 bins
    under a Gaussian decoder (edge bins take the whole tail)."""
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = _approx_std_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


# ----------------------------------------------------------------------------- diffusion
class GaussianDiffusion:
    """Forward process q(x_t | x_0), posterior, losses and single reverse steps."""

    def __init__(self, schedule: str = "linear", num_timesteps: int = 1000,
                 learn_sigma: bool = True):
        self.schedule = schedule
        self._setup(get_beta_schedule(schedule, num_timesteps), learn_sigma)

    @classmethod
    def from_betas(cls, betas, learn_sigma: bool = True, schedule: str = "custom"):
        """Build from an explicit beta sequence (used by respacing)."""
        obj = cls.__new__(cls)
        obj.schedule = schedule
        obj._setup(torch.as_tensor(betas, dtype=torch.float64), learn_sigma)
        return obj

    def _setup(self, betas: torch.Tensor, learn_sigma: bool) -> None:
        betas = betas.to(torch.float64).flatten()
        if betas.numel() < 1 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must be non-empty and in (0, 1]")
        self.learn_sigma = bool(learn_sigma)
        self._device_tables: dict = {}  # (id(table), cuda device) -> the table on that device
        self.num_timesteps = int(betas.numel())
        self.betas = betas
        self.log_betas = torch.log(betas)
        alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(alphas, dim=0)
        one = torch.ones(1, dtype=torch.float64)
        self.alphas_cumprod_prev = torch.cat([one, self.alphas_cumprod[:-1]])
        ac, acp = self.alphas_cumprod, self.alphas_cumprod_prev
        self.sqrt_alphas_cumprod = ac.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - ac).sqrt()
        self.sqrt_recip_alphas_cumprod = (1.0 / ac).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / ac - 1.0).sqrt()
        self.snr = ac / (1.0 - ac)
        # posterior q(x_{t-1} | x_t, x_0)
        self.posterior_variance = betas * (1.0 - acp) / (1.0 - ac)
        # variance at t = 0 is 0; clip its log with the t = 1 value (ADM)
        pv = self.posterior_variance
        first = pv[1:2] if pv.numel() > 1 else betas[:1]
        self.posterior_log_variance_clipped = torch.log(torch.cat([first, pv[1:]]))
        self.posterior_mean_coef1 = betas * acp.sqrt() / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - acp) * alphas.sqrt() / (1.0 - ac)
        # fixed-large variance (DDPM sigma^2 = beta_t, with t = 0 set to the posterior's)
        self.fixed_large_log_variance = torch.log(torch.cat([first, betas[1:]]))

    # -- lookup -------------------------------------------------------------------------
    def _extract(self, arr: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """arr[t] cast to ``like``'s dtype/device, shaped (N, 1, ..., 1) for broadcasting.

        On CUDA the float64 table is indexed on the GPU (a copy per device, made once), so a
        lookup never waits for the device; the values equal the CPU lookup's exactly."""
        if t.device.type == "cuda":
            key = (id(arr), t.device)
            table = self._device_tables.get(key)
            if table is None:
                table = self._device_tables[key] = arr.to(t.device)
            out = table[t.detach().long()].to(device=like.device, dtype=like.dtype)
        else:
            out = arr[t.detach().to("cpu", torch.long)].to(device=like.device, dtype=like.dtype)
        return out.view(-1, *([1] * (like.dim() - 1)))

    # -- forward process ----------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None):
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
        if noise is None:
            noise = torch.randn_like(x0)
        return (self._extract(self.sqrt_alphas_cumprod, t, x0) * x0
                + self._extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

    def q_posterior(self, x0, x_t, t):
        """Mean and log-variance (clipped) of q(x_{t-1} | x_t, x_0)."""
        mean = (self._extract(self.posterior_mean_coef1, t, x_t) * x0
                + self._extract(self.posterior_mean_coef2, t, x_t) * x_t)
        return mean, self._extract(self.posterior_log_variance_clipped, t, x_t)

    def predict_x0_from_eps(self, x_t, t, eps):
        return (self._extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
                - self._extract(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps)

    def predict_eps_from_x0(self, x_t, t, x0):
        return ((self._extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x0)
                / self._extract(self.sqrt_recipm1_alphas_cumprod, t, x_t))

    # -- reverse process ----------------------------------------------------------------
    def p_mean_variance(self, model_output, x_t, t, clip_denoised: bool = False) -> dict:
        """Reverse-step Gaussian p(x_{t-1} | x_t) from a raw model output.

        With ``learn_sigma`` the output is (eps, v) along channels and
        ``log_var = f * log(beta_t) + (1 - f) * posterior_log_var_clipped``, f = (v + 1) / 2;
        otherwise the fixed-large variance of DDPM (sigma^2 = beta_t) is used.
        """
        C = x_t.shape[1]
        if self.learn_sigma:
            if model_output.shape[1] != 2 * C:
                raise ValueError(f"learn_sigma expects {2 * C} output channels, "
                                 f"got {model_output.shape[1]}")
            eps, v = model_output[:, :C], model_output[:, C:]
            min_log = self._extract(self.posterior_log_variance_clipped, t, x_t)
            max_log = self._extract(self.log_betas, t, x_t)
            frac = (v + 1.0) / 2.0
            log_var = frac * max_log + (1.0 - frac) * min_log
        else:
            eps = model_output[:, :C]
            log_var = self._extract(self.fixed_large_log_variance, t, x_t).expand_as(x_t)
        pred_x0 = self.predict_x0_from_eps(x_t, t, eps)
        if clip_denoised:
            pred_x0 = pred_x0.clamp(-1.0, 1.0)
        mean, _ = self.q_posterior(pred_x0, x_t, t)
        return {"mean": mean, "log_variance": log_var, "pred_x0": pred_x0, "eps": eps}

    def p_sample_step(self, model_output, x_t, t, noise, clip_denoised: bool = False):
        """One ancestral DDPM step; no noise is added at t == 0."""
        out = self.p_mean_variance(model_output, x_t, t, clip_denoised)
        nonzero = (t != 0).to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
        return out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise

    def ddim_step(self, model_output, x_t, t, noise=None, eta: float = 0.0,
                  clip_denoised: bool = False):
        """One DDIM step (Song et al. 2021, Eq. 12); deterministic when eta == 0."""
        out = self.p_mean_variance(model_output, x_t, t, clip_denoised)
        x0 = out["pred_x0"]
        eps = self.predict_eps_from_x0(x_t, t, x0)
        ac = self._extract(self.alphas_cumprod, t, x_t)
        acp = self._extract(self.alphas_cumprod_prev, t, x_t)
        sigma = eta * ((1 - acp) / (1 - ac)).sqrt() * (1 - ac / acp).sqrt()
        x = acp.sqrt() * x0 + (1 - acp - sigma ** 2).clamp(min=0).sqrt() * eps
        if eta > 0:
            if noise is None:
                raise ValueError("ddim_step with eta > 0 needs noise")
            nonzero = (t != 0).to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
            x = x + nonzero * sigma * noise
        return x

    # -- losses -------------------------------------------------------------------------
    def vb_terms_bpd(self, model_output, x0, x_t, t) -> torch.Tensor:
        """Per-sample L_{t} (KL) or L_0 (decoder NLL at t == 0), in bits per dim."""
        true_mean, true_log_var = self.q_posterior(x0, x_t, t)
        p = self.p_mean_variance(model_output, x_t, t, clip_denoised=False)
        kl = mean_flat(normal_kl(true_mean, true_log_var, p["mean"], p["log_variance"]))
        nll = -mean_flat(discretized_gaussian_log_likelihood(
            x0, means=p["mean"], log_scales=0.5 * p["log_variance"]))
        return torch.where(t.to(kl.device) == 0, nll, kl) / math.log(2.0)

    def training_losses(self, model, x0, t, model_kwargs=None, noise=None) -> dict:
        """Per-sample losses {"mse": (N,), "vb": (N,)}.

        ``mse`` = mean over C,H,W of (eps - eps_hat)^2.  ``vb`` (zeros unless
        ``learn_sigma``) trains only the variance: the mean comes from a detached
        eps_hat, and it is scaled by T/1000 as ADM's RESCALED_MSE.
        """
        model_kwargs = model_kwargs or {}
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        out = model(x_t, t, **model_kwargs)
        C = x0.shape[1]
        eps_hat = out[:, :C]
        mse = mean_flat((noise - eps_hat) ** 2)
        if self.learn_sigma:
            frozen = torch.cat([eps_hat.detach(), out[:, C:]], dim=1)
            vb = self.vb_terms_bpd(frozen, x0, x_t, t) * (self.num_timesteps / 1000.0)
        else:
            vb = torch.zeros_like(mse)
        return {"mse": mse, "vb": vb}


# ----------------------------------------------------------------------------- timesteps
def sample_timesteps_uniform(n: int, T: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) int64 timesteps uniform on 0..T-1, on the generator's device."""
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    return torch.randint(0, T, (n,), generator=generator, device=generator.device)


def sample_timesteps_stratified(n: int, bounds, generator: torch.Generator):
    """Stratified timesteps: the batch is split into K = len(bounds) equal chunks and
    chunk j draws t uniformly in the inclusive interval bounds[j] = (lo, hi).

    Returns (t (n,) int64, cluster_idx (n,) int64)."""
    K = len(bounds)
    if K < 1:
        raise ValueError("bounds must hold at least one (lo, hi) interval")
    if n % K != 0:
        raise ValueError(f"n={n} must be divisible by the number of intervals K={K}")
    chunk = n // K
    ts, idx = [], []
    for j, (lo, hi) in enumerate(bounds):
        lo, hi = int(lo), int(hi)
        if not 0 <= lo <= hi:
            raise ValueError(f"bounds[{j}] = ({lo}, {hi}) must satisfy 0 <= lo <= hi")
        ts.append(torch.randint(lo, hi + 1, (chunk,), generator=generator,
                                device=generator.device))
        idx.append(torch.full((chunk,), j, dtype=torch.long, device=generator.device))
    return torch.cat(ts), torch.cat(idx)
