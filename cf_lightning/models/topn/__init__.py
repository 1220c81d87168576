"""Top-N models: popularity, EASE, iALS, BPR-MF, and the ranking losses."""
