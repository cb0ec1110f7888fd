"""The training engine.

trainer (the Engine a Config builds, and the run around it), handlers (attached in one
``setup_handlers``), trackers (TensorBoard, W&B, MLflow), transfer (``--init-from``), datasize
(the settings that follow the data set's size).
"""
