"""Likelihood terms of the variational bound: Gaussian KL and the discretised Gaussian decoder likelihood."""
import math

import torch


def mean_flat(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the batch one: [B, ...] -> [B]."""
    return tensor.mean(dim=tuple(range(1, tensor.ndim)))


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats, element-wise with broadcasting.

    Any argument may be a Python float (e.g. the standard normal prior, mean 0 and log-variance 0).
    """
    reference = next((value for value in (mean1, logvar1, mean2, logvar2) if isinstance(value, torch.Tensor)), None)
    if reference is None:
        raise TypeError("normal_kl: expected at least one torch.Tensor argument, found only Python numbers")
    # exp() needs tensors; broadcasting alone would leave a float log-variance a float.
    logvar1, logvar2 = (
        value if isinstance(value, torch.Tensor) else torch.tensor(value).to(reference) for value in (logvar1, logvar2)
    )
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Standard normal CDF by the tanh approximation used by Ho et al. (kept for parity with their likelihoods)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, *, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """Log-probability (nats) of `x` under N(means, exp(log_scales)^2) integrated over x's 8-bit bin.

    Assumes `x` holds 8-bit values mapped to [-1, 1]: each bin is 2/255 wide, and the two edge bins
    (x below -0.999 or above 0.999) extend to -inf and +inf. Data on another range or grid (heatmaps on [-v, v])
    only get an approximate likelihood from this.
    """
    if not x.shape == means.shape == log_scales.shape:
        raise ValueError(
            f"discretized_gaussian_log_likelihood: expected x, means and log_scales of one shape, "
            f"found {tuple(x.shape)}, {tuple(means.shape)}, {tuple(log_scales.shape)}"
        )
    half_bin = 1.0 / 255.0
    centred = x - means
    inv_std = torch.exp(-log_scales)
    cdf_upper = approx_standard_normal_cdf(inv_std * (centred + half_bin))
    cdf_lower = approx_standard_normal_cdf(inv_std * (centred - half_bin))
    # The clamps keep log() finite where a bin's probability underflows.
    log_cdf_upper = torch.log(cdf_upper.clamp(min=1e-12))
    log_one_minus_cdf_lower = torch.log((1.0 - cdf_lower).clamp(min=1e-12))
    log_bin_mass = torch.log((cdf_upper - cdf_lower).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_one_minus_cdf_lower, log_bin_mass))
