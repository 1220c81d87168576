"""Models in and out of files: the checkpoint keys, the one safe checkpoint reader, the checks a
checkpoint passes before a model is built from it, and the model-size estimate.

Imports nothing from the rest of the package but ``errors``: ``callbacks``,
``inference`` and ``models`` all use it, so it must depend on none of them.
"""
