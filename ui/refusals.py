"""The one translation of refusals for Gradio events: a LoupeError becomes a gr.Error with its sentence.

Every page's handlers are wrapped at mount time (ui/mounts.py), so an event added later is covered by
construction; make_handlers functions wrap what they return too, for code that calls them directly.
No handler catches a refusal itself.
"""

from __future__ import annotations

import functools
import inspect

import gradio as gr

from errors import LoupeError
from ui.markdown import html_text


def as_gradio_error(refusal: LoupeError) -> gr.Error:
    """The gr.Error a person sees for a refusal (HTML-escaped: Gradio renders messages as HTML)."""
    return gr.Error(html_text(refusal.message))


def shows_refusals(handler):
    """handler, with any LoupeError it raises shown to the user as a gr.Error (signature kept for Gradio)."""
    if getattr(handler, "shows_refusals", False):
        return handler
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def wrapped_generator(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except LoupeError as refusal:
                raise as_gradio_error(refusal) from None

        wrapped = wrapped_generator
    elif inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def wrapped_coroutine(*args, **kwargs):
            try:
                return await handler(*args, **kwargs)
            except LoupeError as refusal:
                raise as_gradio_error(refusal) from None

        wrapped = wrapped_coroutine
    else:

        @functools.wraps(handler)
        def wrapped_function(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except LoupeError as refusal:
                raise as_gradio_error(refusal) from None

        wrapped = wrapped_function
    wrapped.shows_refusals = True
    return wrapped


def show_refusals_everywhere(blocks: gr.Blocks) -> None:
    """Wrap the handler of every event of blocks with shows_refusals."""
    for block_fn in blocks.fns.values():
        if block_fn.fn is not None:
            block_fn.fn = shows_refusals(block_fn.fn)
