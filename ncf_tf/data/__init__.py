"""Data: the authors' files -> scipy CSR, the negative sampler, validation split, prepare, id maps, download."""
