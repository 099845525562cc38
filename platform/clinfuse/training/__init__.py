"""Training: fold data, the loop, metrics, survival loss, cross-validated runs and inference."""
