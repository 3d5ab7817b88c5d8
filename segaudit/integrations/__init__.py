"""Adapters from other libraries' outputs to segaudit's inputs (each imports its library lazily).

- :mod:`segaudit.integrations.transformers`: Hugging Face semantic-segmentation models'
  outputs as per-image probabilities at the masks' size (``pip install 'segaudit[transformers]'``).
"""
