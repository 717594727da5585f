"""Notebook and Voila widgets; each calls the public asrkit API and holds no model code."""
