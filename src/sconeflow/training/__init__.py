"""Training: the network, the loop, calibration and the model artifact."""
