"""How good the faces are.

inception (the standard backbone), onnx_backend (where it runs), backbones (loading either),
features (each image embedded once), metrics (the math), scores (the registry of every score),
quality (the per-epoch evaluator), scoring (``animegan-evaluate``'s work), figures (every plot).
"""
