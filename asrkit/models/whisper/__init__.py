"""OpenAI Whisper in Keras 3: checkpoint readers, front end, tokenizer, network, decoding and the
asrkit model backend (see :mod:`asrkit.models.whisper.model`)."""
