"""automodel-onboard: onboard a Hugging Face architecture into NeMo AutoModel.

The flow, one package per stage: model (source -> spec), layout (per kind, see kinds), render (Copier),
destination (install and register), verify; commands drive it.
"""
