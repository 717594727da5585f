"""The environment TensorFlow and Keras read once, when first imported: every asrkit module that imports
either imports this first, so importing ``asrkit`` itself changes nothing."""

import os

# Keras 3 can run on several backends; asrkit's models are TensorFlow graphs.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up notices (CPU features, oneDNN) would bury asrkit's output; warnings still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
