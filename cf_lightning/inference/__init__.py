"""Using a trained model without Hydra: loading a checkpoint, scoring, ranking, fold-in of new
users, interpretation."""
