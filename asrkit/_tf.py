"""The environment TensorFlow and Keras read once, when first imported: every asrkit module that imports
either imports this first, so importing ``asrkit`` itself changes nothing."""

import os

# Keras 3 can run on several backends; asrkit's models are TensorFlow graphs.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ notices would bury asrkit's output; warnings still show. (TensorFlow 2.21 still prints the
# few it logs before absl::InitializeLog, e.g. oneDNN's, whatever this says: tensorflow/tensorflow#100442.)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
