"""Rating models beyond the chapter: baselines, SVD++, Bayesian MF with its Gibbs sampler, the item
autoencoders, the blend."""
