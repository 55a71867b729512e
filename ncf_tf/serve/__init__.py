"""Using a trained model: top-K recommendation and export."""
