"""GMF, MLP and NeuMF (Keras functional API), their weight files and factored scoring."""
