"""Text-to-3D: radiance fields, a differentiable volume renderer, a text-conditioned 2D prior trained on renders of
procedural shapes, score distillation into a field, mesh / GIF export and an R-precision metric."""
