"""Named outputs for Gradio events: handlers return {output name: value}, never a positional tuple.

wire() turns such a handler into the function Gradio calls, mapping names to the components given,
so adding an output is one entry in one dict and a name that matches no component fails loudly.
"""

from __future__ import annotations

import functools

import gradio as gr


def wire(handler, outputs: dict[str, gr.components.Component]):
    """(the event function, its outputs list) for a handler returning {name: value} (None: nothing to show)."""

    @functools.wraps(handler)  # keeps the signature, so Gradio still injects gr.Request and gr.Progress
    def event(*args, **kwargs):
        named = handler(*args, **kwargs)
        if not named:  # Gradio would take an empty dict as the value of a single output
            return gr.skip() if len(outputs) == 1 else tuple(gr.skip() for _ in outputs)
        unknown = set(named) - set(outputs)
        if unknown:
            raise KeyError(f"{handler.__name__} returned outputs this event does not have: {sorted(unknown)}")
        return {outputs[name]: value for name, value in named.items()}

    return event, list(outputs.values())
