"""Loupe's JSON API: FastAPI routes mounted before the Gradio pages."""
