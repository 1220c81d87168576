"""The Lightning callbacks a training run uses: the epoch table and result files, the non-finite
loss guard, checkpoint metadata, ranking evaluation, TensorBoard extras and hparams."""
