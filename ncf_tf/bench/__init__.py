"""Speed figures of this machine (bin/benchmark)."""
