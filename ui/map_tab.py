"""The Map tab: every active image placed in 2-D by its features (labeling/ranking/dataset_map.py), coloured
by its current label, likely-wrong labels marked; a click picks the nearest images, two clicks a rectangle,
and "Open in Review" shows the chosen images in the Review tab. The history of the image nearest a click is
shown below the map (ui/history.py).

The map is a PNG drawn by matplotlib (a 10,000-point scatter draws in well under the 2 s budget, bench/map.py)
in a gr.Image, whose select event gives the clicked pixel; the drawing's axes turn it back into map
coordinates. A gr.ScatterPlot was not used: in Gradio 6.31 its select gives a range along x only.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from context import Context
from labeling import review
from labeling.ranking.dataset_map import MapPoints, map_points
from ui.auth import request_user, require_role_in_handler
from ui.history import build_history_box, shown_history
from ui.readable import count, duration, when
from ui.refusals import shows_refusals
from ui.wiring import wire

ALL = "(all classes)"
POINT, RECTANGLE = "Point", "Rectangle (two clicks)"
WIDTH_PX, HEIGHT_PX = 1000, 700
PICK_RADIUS_PX = 8  # a click takes the points drawn this close to it, else the single nearest one
NO_MAP = "**No map yet.** The map is drawn after the next rescore."
UNLABELED_COLOUR = (0.6, 0.6, 0.6)
PICK_HISTORY = "Click a point to see its image's history."


def class_colours(classes: list[str]) -> dict[str, tuple]:
    """A fixed colour per class (the order of the map's classes, not of the filtered view)."""
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    if len(classes) <= 20:
        return {name: palette(i) for i, name in enumerate(classes)}
    hues = colormaps["hsv"]
    return {name: hues(i / len(classes)) for i, name in enumerate(classes)}


def draw_map(
    xy: np.ndarray,
    labels: list[str | None],
    suspects: np.ndarray,
    classes: list[str] | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    chosen: np.ndarray | None = None,
    box: tuple[float, float, float, float] | None = None,
) -> tuple[np.ndarray, dict]:
    """The map as an RGB array, and the view that turns a pixel of it back into map coordinates.

    Coloured by label with a legend; suspects drawn as black crosses; chosen points ringed in red; box (x0, y0,
    x1, y1) drawn dashed. bounds fixes the axes so that a filtered view keeps the whole map's geometry.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    classes = classes if classes is not None else sorted({name for name in labels if name is not None})
    colours = class_colours(classes)
    figure = Figure(figsize=(WIDTH_PX / 100, HEIGHT_PX / 100), dpi=100)
    canvas = FigureCanvasAgg(figure)  # no pyplot: its global state is not for a threaded server
    axes = figure.add_axes((0.01, 0.01, 0.74, 0.98))
    axes.set_xticks([])
    axes.set_yticks([])
    size = float(np.clip(3000 / max(len(xy), 1), 3, 40))
    names = np.array([name if name is not None else "" for name in labels], dtype=object)
    handles = []
    for name in [*classes, None]:
        rows = names == (name if name is not None else "")
        colour = colours.get(name, UNLABELED_COLOUR) if name is not None else UNLABELED_COLOUR
        if rows.any():
            axes.scatter(xy[rows, 0], xy[rows, 1], s=size, color=colour, linewidths=0)
        if rows.any() or name in colours:
            handles.append(
                Line2D([], [], marker="o", linestyle="", color=colour, label=name if name is not None else "unlabeled")
            )
    if len(xy) and suspects.any():
        axes.scatter(xy[suspects, 0], xy[suspects, 1], s=max(size * 2.5, 18), marker="x", color="black", linewidths=1)
    handles.append(Line2D([], [], marker="x", linestyle="", color="black", label="likely wrong"))
    if chosen is not None and chosen.any():
        axes.scatter(
            xy[chosen, 0], xy[chosen, 1], s=max(size * 5, 50), facecolors="none", edgecolors="red", linewidths=1.5
        )
    if box is not None:
        x0, y0, x1, y1 = box
        axes.add_patch(
            Rectangle((min(x0, x1), min(y0, y1)), abs(x1 - x0), abs(y1 - y0), fill=False, linestyle="--", color="red")
        )
    if bounds is None:
        bounds = (
            (float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max()))
            if len(xy)
            else (0.0, 1.0, 0.0, 1.0)
        )
    x_min, x_max, y_min, y_max = bounds
    pad_x, pad_y = max((x_max - x_min) * 0.03, 1e-3), max((y_max - y_min) * 0.03, 1e-3)
    axes.set_xlim(x_min - pad_x, x_max + pad_x)
    axes.set_ylim(y_min - pad_y, y_max + pad_y)
    figure.legend(
        handles=handles[:40], loc="upper left", bbox_to_anchor=(0.76, 0.99), fontsize=8, frameon=False, ncols=1
    )
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    box_px = axes.get_window_extent()  # display pixels, origin at the bottom left
    view = {
        "height": pixels.shape[0],
        "left": float(box_px.x0),
        "bottom": float(box_px.y0),
        "width_px": float(box_px.width),
        "height_px": float(box_px.height),
        "xlim": [float(v) for v in axes.get_xlim()],
        "ylim": [float(v) for v in axes.get_ylim()],
    }
    return pixels, view


def to_map(view: dict, px: float, py: float) -> tuple[float, float]:
    """Map coordinates of the pixel (px, py) of a drawn map (py counted from the top)."""
    (x0, x1), (y0, y1) = view["xlim"], view["ylim"]
    x = x0 + (px - view["left"]) / view["width_px"] * (x1 - x0)
    y = y0 + (view["height"] - py - view["bottom"]) / view["height_px"] * (y1 - y0)
    return x, y


def to_pixel(view: dict, x: float, y: float) -> tuple[float, float]:
    """The pixel (from the top left) where the map point (x, y) is drawn: to_map's inverse."""
    (x0, x1), (y0, y1) = view["xlim"], view["ylim"]
    px = view["left"] + (x - x0) / (x1 - x0) * view["width_px"]
    py = view["height"] - view["bottom"] - (y - y0) / (y1 - y0) * view["height_px"]
    return px, py


def method_words(method: str) -> str:
    """How a map was computed, in words."""
    return "t-SNE on 50 principal components" if method == "pca50+tsne" else method


def chosen_words(chosen: list[int]) -> str:
    """How many images the selection holds."""
    if not chosen:
        return "Click a point, or choose Rectangle and click two opposite corners."
    return f"**{count(len(chosen))}** {'image' if len(chosen) == 1 else 'images'} chosen."


def make_handlers(context: Context):
    """The Map tab's handlers, bound to this Loupe instance; each returns {output name: value}."""

    def points_for(label: str | None, suspects_only: bool) -> MapPoints | None:
        return map_points(context, None if label in (None, "", ALL) else label, bool(suspects_only))

    def drawn(points: MapPoints, chosen: list[int], box=None) -> tuple[np.ndarray, dict]:
        marked = np.isin(points.image_ids, np.asarray(chosen, dtype=np.int64)) if chosen else None
        return draw_map(points.xy, points.labels, points.suspects, points.classes, points.bounds, marked, box)

    def show(label: str | None, suspects_only: bool, request: gr.Request) -> dict:
        require_role_in_handler(context, request, review.EXPERT)
        points = points_for(label, suspects_only)
        cleared = {
            "chosen": [],
            "corner": None,
            "picked": None,
            "chosen_text": chosen_words([]),
            "open": gr.Button(interactive=False),
        }
        if points is None:
            return {
                **cleared,
                "status": NO_MAP,
                "image": None,
                "view": None,
                "class_filter": gr.Dropdown(choices=[ALL]),
            }
        pixels, view = drawn(points, [])
        info = points.info
        status = (
            f"**{count(points.total)}** images on the map, computed {when(info.created_at)} "
            f"({method_words(info.method)}, {duration(info.seconds)}). "
            f"Black crosses: **{count(points.suspect_total)}** likely wrong labels, the ones Review shows first. "
            f"Shown: {count(len(points.image_ids))}."
        )
        choices = [ALL, *points.classes]
        value = label if label in choices else ALL
        return {
            **cleared,
            "status": status,
            "image": pixels,
            "view": view,
            "class_filter": gr.Dropdown(choices=choices, value=value),
        }

    def pick(
        evt: gr.SelectData,
        view: dict | None,
        corner,
        mode: str,
        label: str | None,
        suspects_only: bool,
        request: gr.Request,
    ) -> dict:
        require_role_in_handler(context, request, review.EXPERT)
        points = points_for(label, suspects_only)
        if points is None or view is None or not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:
            return {}
        x, y = to_map(view, float(evt.index[0]), float(evt.index[1]))
        if mode == RECTANGLE and corner is None:
            return {"corner": [x, y], "chosen_text": "First corner set: click the opposite corner."}
        if mode == RECTANGLE:
            box = (corner[0], corner[1], x, y)
            chosen = points.within(*box)
        else:
            box = None
            radius = PICK_RADIUS_PX / view["width_px"] * (view["xlim"][1] - view["xlim"][0])
            chosen = points.nearest(x, y, radius)
        pixels, _ = drawn(points, chosen, box)
        return {
            "chosen": chosen,
            "corner": None,
            # The history follows one image: the nearest to a click, or a rectangle's only one.
            "picked": chosen[0] if chosen and (box is None or len(chosen) == 1) else None,
            "image": pixels,
            "chosen_text": chosen_words(chosen),
            "open": gr.Button(interactive=bool(chosen)),
        }

    def open_in_review(chosen: list[int] | None, request: gr.Request) -> dict:
        require_role_in_handler(context, request, review.EXPERT)
        if not chosen:
            raise gr.Error("Choose images on the map first.")
        return {"selection": list(chosen), "tabs": gr.Tabs(selected="review")}

    def show_history(picked: int | None, request: gr.Request) -> dict:
        """The history of the image picked on the map (a note when none is)."""
        return shown_history(context, request_user(context, request), picked, PICK_HISTORY)

    return tuple(shows_refusals(handler) for handler in (show, pick, open_in_review, show_history))


def build_map_tab(context: Context, selection: gr.State, tabs: gr.Tabs) -> None:
    """The Map tab's components and wiring; call inside the review page's gr.Tabs. "Open in Review" puts the
    chosen image ids in selection and switches tabs to the Review tab."""
    show, pick, open_in_review, show_history = make_handlers(context)
    with gr.Tab("Map", id="map") as tab:
        view = gr.State(None)
        corner = gr.State(None)
        chosen = gr.State([])
        picked = gr.State(None)  # the one image whose history is shown
        status = gr.Markdown(NO_MAP, elem_id="map-status")
        with gr.Row():
            class_filter = gr.Dropdown([ALL], value=ALL, label="Class", scale=1, elem_id="map-class")
            suspects_only = gr.Checkbox(label="Likely wrong only", scale=1, elem_id="map-suspects")
            mode = gr.Radio([POINT, RECTANGLE], value=POINT, label="Select", scale=2, elem_id="map-mode")
        image = gr.Image(
            type="numpy",
            format="png",
            interactive=False,
            show_label=False,
            buttons=[],
            elem_id="map-image",
        )
        with gr.Row():
            chosen_text = gr.Markdown(chosen_words([]), elem_id="map-chosen")
            open_button = gr.Button("Open in Review", interactive=False, scale=0, elem_id="map-open")
        history = build_history_box("History of the point clicked", "map-history", PICK_HISTORY)

    outputs = {
        "status": status,
        "image": image,
        "view": view,
        "class_filter": class_filter,
        "chosen": chosen,
        "corner": corner,
        "picked": picked,
        "chosen_text": chosen_text,
        "open": open_button,
    }
    history_fn, history_outputs = wire(show_history, history.outputs)
    history_event = {"fn": history_fn, "inputs": [picked], "outputs": history_outputs, "api_visibility": "private"}
    show_fn, show_outputs = wire(show, outputs)
    shown = {"fn": show_fn, "inputs": [class_filter, suspects_only], "outputs": show_outputs}
    tab.select(**shown, api_visibility="private").then(**history_event)
    class_filter.input(**shown, api_visibility="private").then(**history_event)
    suspects_only.input(**shown, api_visibility="private").then(**history_event)
    pick_fn, pick_outputs = wire(pick, outputs)
    image.select(
        pick_fn,
        inputs=[view, corner, mode, class_filter, suspects_only],
        outputs=pick_outputs,
        api_visibility="private",
    ).then(**history_event)
    open_fn, open_outputs = wire(open_in_review, {"selection": selection, "tabs": tabs})
    open_button.click(open_fn, inputs=[chosen], outputs=open_outputs, api_visibility="private")
