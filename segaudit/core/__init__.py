"""The engine's machinery: datasets, passes, the fused kernel, pooling. No method names."""
