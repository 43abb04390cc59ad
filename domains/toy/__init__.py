"""The toy domain: 2D point sets (two moons, 8 Gaussians, checkerboard, swiss roll), polydiff's reference plugin."""
