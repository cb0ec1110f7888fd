"""Data in: the faces a run trains and is judged on.

images (decode files), cache (``--cache``: decode once, keyed by a hash), synthetic (the demo's
drawn faces), download (``--download kaggle|hf``), sampler (the resumable epoch order), loading
(image folders, the held-out split, the training DataLoader).
"""
