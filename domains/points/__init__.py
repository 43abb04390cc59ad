"""polydiff.domains.points: point-cloud generation (meshes -> surface samples -> set diffusion -> PLY)."""
