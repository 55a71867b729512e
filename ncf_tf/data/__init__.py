"""Data: the authors' files as scipy CSR, the sampler, validation, prepare, id maps, download."""
