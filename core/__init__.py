"""polydiff.core: the domain-agnostic mathematics of diffusion.

Schedules, denoiser wrappers, losses, samplers, guidance and the shared training loop. Nothing here
knows about a particular data domain: every piece sees only tensors and a denoiser ``D(x, sigma, cond)``.
"""
