"""The registry contract: what training promises scoring and monitoring about a registered model."""
