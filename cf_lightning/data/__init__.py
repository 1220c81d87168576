"""MovieLens files → typed frames → vocabulary → tensors → splits → batches."""
