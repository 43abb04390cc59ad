"""Network pieces shared by several domains (noise and label embeddings, a 2D U-Net)."""
