"""Small labeled image datasets from different domains, for the label-error ranking benchmark.

Each dataset is built offline from Debian packages or Python packages already installed, reproducibly
(sorted enumeration, fixed seeds), into a cache folder that is never committed:

    <cache>/<dataset>/<class>/<file>.png    plus <cache>/<dataset>/manifest.json once complete

- digits:  scikit-learn's 1797 handwritten digits, drawn exactly as the product's demo (64 px grey).
- scripts: one letter of a writing system in a Noto font (fonts-noto-core); class = writing system.
- icons:   Papirus icons (papirus-icon-theme) rendered by rsvg-convert; class = the theme's context.
- emoji:   Noto Color Emoji (fonts-noto-color-emoji); class = the Unicode emoji group (unicode-data).

Every image except the digits is a 96×96 RGB PNG on white. The cache is $LOUPE_BENCH_CACHE, else
~/.cache/loupe/ranking-datasets. Nothing is downloaded; a missing package raises an error that names
the command to install it.

    .venv/bin/python bench/ranking_data.py [--only NAME ...] [--force] [--root DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # digit_png lives in the project (labeling/imports/demo.py); bench scripts run from bench/.
    sys.path.insert(0, str(ROOT))

DATASETS = ("digits", "scripts", "icons", "emoji")

SEED = 20240611
IMAGE_PX = 96
MANIFEST = "manifest.json"
# Bumped when the way a dataset is drawn changes, so a cache built by an older script is easy to spot.
FORMAT_VERSION = 1

NOTO_DIR = Path("/usr/share/fonts/truetype/noto")
EMOJI_FONT = NOTO_DIR / "NotoColorEmoji.ttf"
# CBDT colour fonts only exist at their bitmap strike; 109 px is the one Noto Color Emoji ships.
EMOJI_FONT_PX = 109
EMOJI_TEST_CANDIDATES = (
    Path("/usr/share/unicode/emoji/emoji-test.txt"),
    Path("/usr/share/unicode-data/emoji/emoji-test.txt"),
)
ICON_THEMES = Path("/usr/share/icons")

SCRIPTS_PER_CLASS = 90
ICONS_PER_CLASS = 100
EMOJI_PER_CLASS = 100


class MissingSource(RuntimeError):
    """A package a dataset is drawn from is not installed."""


def cache_dir() -> Path:
    """Where datasets are built: $LOUPE_BENCH_CACHE, else ~/.cache/loupe/ranking-datasets."""
    configured = os.environ.get("LOUPE_BENCH_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "loupe" / "ranking-datasets"


def class_rng(dataset: str, label: str) -> np.random.Generator:
    """A generator fixed by dataset and class, so changing one class never reshuffles another."""
    return np.random.default_rng([SEED, zlib.crc32(dataset.encode()), zlib.crc32(label.encode())])


def require_debian(package: str, path: Path) -> None:
    """Raise MissingSource naming the apt-get command when a file that `package` installs is absent."""
    if not path.exists():
        raise MissingSource(f"{path} is missing; install it with: apt-get install {package}")


def debian_version(package: str) -> str | None:
    """The installed version of a Debian package, or None where dpkg does not know it."""
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def png_bytes(image: Image.Image) -> bytes:
    """An image encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def is_blank(image: Image.Image) -> bool:
    """True when an RGB/L image on white has no ink at all."""
    return ImageChops.invert(image.convert("L")).getbbox() is None


def on_white_square(image: Image.Image, size: int = IMAGE_PX) -> Image.Image:
    """Flatten any alpha onto white, pad to a centred square and scale to size×size RGB."""
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    side = max(flat.size)
    square = Image.new("RGB", (side, side), "white")
    square.paste(flat, ((side - flat.width) // 2, (side - flat.height) // 2))
    return square if side == size else square.resize((size, size), Image.LANCZOS)


# --------------------------------------------------------------------------------------------- digits


def build_digits(folder: Path) -> dict:
    """All 1797 scikit-learn digits, drawn by the demo's digit_png, filed by their true digit."""
    try:
        import sklearn
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise MissingSource(
            "scikit-learn is missing; install the project's requirements (pip install scikit-learn)"
        ) from error
    # The demo's own rendering, so the benchmark's digits are byte for byte the product's demo images.
    from labeling.imports.demo import digit_png

    digits = load_digits()
    for index, (pixels, target) in enumerate(zip(digits.data, digits.target, strict=True)):
        class_folder = folder / str(int(target))
        class_folder.mkdir(exist_ok=True)
        (class_folder / f"digit_{index:04d}.png").write_bytes(digit_png(pixels))
    return {
        "source": f"scikit-learn {sklearn.__version__} load_digits() (UCI optical digits test set), "
        "drawn by labeling.imports.demo.digit_png: 64x64 greyscale, white on black",
        "packages": {"scikit-learn": sklearn.__version__},
    }


# -------------------------------------------------------------------------------------------- scripts


@dataclass(frozen=True)
class Script:
    """A writing system: where its letters are in Unicode and which Noto fonts draw it."""

    label: str
    name_prefix: str  # Unicode character names of its letters start with this word.
    ranges: tuple[tuple[int, int], ...]
    font_globs: tuple[str, ...]


LATIN_GREEK_CYRILLIC_FONTS = ("NotoSans-*.ttf", "NotoSerif-*.ttf", "NotoSansDisplay-*.ttf", "NotoSerifDisplay-*.ttf")

SCRIPTS = (
    Script("latin", "LATIN", ((0x0041, 0x007A), (0x00C0, 0x017F)), LATIN_GREEK_CYRILLIC_FONTS),
    Script("greek", "GREEK", ((0x0370, 0x03FF),), LATIN_GREEK_CYRILLIC_FONTS),
    Script("cyrillic", "CYRILLIC", ((0x0400, 0x04FF),), LATIN_GREEK_CYRILLIC_FONTS),
    Script("armenian", "ARMENIAN", ((0x0530, 0x058F),), ("NotoSansArmenian-*.ttf", "NotoSerifArmenian-*.ttf")),
    Script(
        "hebrew",
        "HEBREW",
        ((0x0590, 0x05FF),),
        ("NotoSansHebrew-*.ttf", "NotoSerifHebrew-*.ttf", "NotoRashiHebrew-*.ttf"),
    ),
    Script(
        "arabic",
        "ARABIC",
        ((0x0600, 0x06FF),),
        ("NotoSansArabic-*.ttf", "NotoNaskhArabic-*.ttf", "NotoKufiArabic-*.ttf"),
    ),
    Script("devanagari", "DEVANAGARI", ((0x0900, 0x097F),), ("NotoSansDevanagari-*.ttf", "NotoSerifDevanagari-*.ttf")),
    Script("thai", "THAI", ((0x0E00, 0x0E7F),), ("NotoSansThai-*.ttf", "NotoSerifThai-*.ttf", "NotoLoopedThai-*.ttf")),
    Script("georgian", "GEORGIAN", ((0x10A0, 0x10FF),), ("NotoSansGeorgian-*.ttf", "NotoSerifGeorgian-*.ttf")),
    Script("ethiopic", "ETHIOPIC", ((0x1200, 0x137F),), ("NotoSansEthiopic-*.ttf", "NotoSerifEthiopic-*.ttf")),
)

LETTER_CATEGORIES = {"Lu", "Ll", "Lt", "Lo"}
GLYPH_PX_RANGE = (38, 72)  # font sizes drawn from, so letters differ in size as well as shape
MAX_INK_PX = 84  # larger letters are scaled down to leave a margin inside the 96 px image
MAX_OFFSET_PX = 6
HOMOGLYPH_PX = 48  # size at which letters of different scripts are compared for identical drawings
UNASSIGNED = "\U0010ffff"  # never assigned, so every font draws its .notdef (tofu) for it


def script_letters(script: Script) -> list[str]:
    """The letters of a script, in code point order."""
    letters = []
    for start, end in script.ranges:
        for code_point in range(start, end + 1):
            char = chr(code_point)
            if unicodedata.category(char) in LETTER_CATEGORIES and unicodedata.name(char, "").startswith(
                script.name_prefix + " "
            ):
                letters.append(char)
    return letters


def font_code_points(path: Path) -> set[int] | None:
    """The code points a font maps to glyphs, or None when fontTools is not importable."""
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        return None
    with TTFont(path, lazy=True) as font:
        return set(font.getBestCmap())


def glyph_mask(font: ImageFont.FreeTypeFont, char: str) -> Image.Image | None:
    """A letter's ink, black on white and cropped tight, or None when it draws nothing."""
    left, top, right, bottom = font.getbbox(char)
    width, height = right - left + 8, bottom - top + 8
    if width <= 8 or height <= 8:
        return None
    canvas = Image.new("L", (width, height), 255)
    ImageDraw.Draw(canvas).text((4 - left, 4 - top), char, font=font, fill=0)
    ink = ImageChops.invert(canvas).getbbox()
    return canvas.crop(ink) if ink else None


class ScriptFont:
    """One font file with the letters it really draws, and its tofu for comparison."""

    def __init__(self, path: Path):
        self.path = path
        self.code_points = font_code_points(path)
        self._sizes: dict[int, tuple[ImageFont.FreeTypeFont, bytes | None]] = {}

    def at(self, size: int) -> tuple[ImageFont.FreeTypeFont, bytes | None]:
        """The font at a pixel size, with the bytes of its .notdef drawing at that size."""
        if size not in self._sizes:
            font = ImageFont.truetype(str(self.path), size)
            notdef = glyph_mask(font, UNASSIGNED)
            self._sizes[size] = (font, notdef.tobytes() if notdef else None)
        return self._sizes[size]

    def covers(self, char: str) -> bool:
        """True when the cmap maps the letter (always True without fontTools; drawing checks it then)."""
        return self.code_points is None or ord(char) in self.code_points

    def draw(self, char: str, size: int) -> Image.Image | None:
        """The letter's tight ink at a size, or None when it is blank or the font's tofu."""
        font, notdef = self.at(size)
        mask = glyph_mask(font, char)
        if mask is None or (notdef is not None and mask.tobytes() == notdef):
            return None
        return mask


def drop_homoglyphs(
    letters: list[str], fonts: list[ScriptFont], earlier_drawings: dict[Path, set[bytes]]
) -> tuple[list[str], str]:
    """Letters that no shared font draws exactly like a letter of an earlier script, and those dropped.

    Greek and Cyrillic share fonts with Latin, and letters such as Α/A or Р/P are the very same
    drawing there; an image of one would be correctly labeled yet indistinguishable from the other
    class, which a label-error benchmark would wrongly count against the ranking. earlier_drawings
    (per font) is updated with this script's letters for the scripts that follow.
    """
    kept, dropped = [], []
    drawings = {}
    for char in letters:
        drawings[char] = {}
        for font in fonts:
            mask = font.draw(char, HOMOGLYPH_PX) if font.covers(char) else None
            if mask is not None:
                drawings[char][font.path] = repr(mask.size).encode() + mask.tobytes()
        same = any(drawing in earlier_drawings.get(path, ()) for path, drawing in drawings[char].items())
        (dropped if same else kept).append(char)
    for per_font in drawings.values():
        for path, drawing in per_font.items():
            earlier_drawings.setdefault(path, set()).add(drawing)
    return kept, "".join(dropped)


def script_image(mask: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A letter's ink centred on a 96 px white RGB image, nudged by a small random offset."""
    if max(mask.size) > MAX_INK_PX:
        scale = MAX_INK_PX / max(mask.size)
        mask = mask.resize((max(1, round(mask.width * scale)), max(1, round(mask.height * scale))), Image.LANCZOS)
    canvas = Image.new("L", (IMAGE_PX, IMAGE_PX), 255)
    dx, dy = (int(v) for v in rng.integers(-MAX_OFFSET_PX, MAX_OFFSET_PX + 1, size=2))
    # Clamp so the offset never pushes ink off the canvas.
    x = min(max((IMAGE_PX - mask.width) // 2 + dx, 0), IMAGE_PX - mask.width)
    y = min(max((IMAGE_PX - mask.height) // 2 + dy, 0), IMAGE_PX - mask.height)
    canvas.paste(mask, (x, y))
    return canvas.convert("RGB")


def build_scripts(folder: Path) -> dict:
    """SCRIPTS_PER_CLASS random letters per writing system, each in a random Noto font that has it."""
    require_debian("fonts-noto-core", NOTO_DIR / "NotoSans-Regular.ttf")
    font_cache: dict[Path, ScriptFont] = {}
    fonts_used: dict[str, list[str]] = {}
    earlier_drawings: dict[Path, set[bytes]] = {}
    homoglyphs: dict[str, str] = {}
    seen: set[str] = set()
    for script in SCRIPTS:
        paths = sorted({path for pattern in script.font_globs for path in NOTO_DIR.glob(pattern)})
        if not paths:
            raise MissingSource(
                f"no Noto font for {script.label} in {NOTO_DIR}; install it with: apt-get install fonts-noto-core"
            )
        fonts = [font_cache.setdefault(path, ScriptFont(path)) for path in paths]
        fonts_used[script.label] = [path.name for path in paths]
        letters = [char for char in script_letters(script) if any(font.covers(char) for font in fonts)]
        letters, homoglyphs[script.label] = drop_homoglyphs(letters, fonts, earlier_drawings)
        rng = class_rng("scripts", script.label)
        class_folder = folder / script.label
        class_folder.mkdir()
        made = attempts = 0
        while made < SCRIPTS_PER_CLASS:
            attempts += 1
            if attempts > SCRIPTS_PER_CLASS * 50:
                raise RuntimeError(f"scripts/{script.label}: only {made} drawable letters found")
            char = letters[int(rng.integers(len(letters)))]
            covering = [font for font in fonts if font.covers(char)]
            font = covering[int(rng.integers(len(covering)))]
            size = int(rng.integers(GLYPH_PX_RANGE[0], GLYPH_PX_RANGE[1] + 1))
            mask = font.draw(char, size)
            image = script_image(mask, rng) if mask is not None else None
            if image is None:
                continue
            data = png_bytes(image)
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            (class_folder / f"{script.label}_{made:03d}_u{ord(char):04x}.png").write_bytes(data)
            made += 1
    return {
        "source": "fonts-noto-core: one letter (Unicode name and block of the script) per image in a random "
        f"Noto font whose cmap has it, font size {GLYPH_PX_RANGE[0]}-{GLYPH_PX_RANGE[1]} px, offset up to "
        f"±{MAX_OFFSET_PX} px, black on white",
        "packages": {"fonts-noto-core": debian_version("fonts-noto-core")},
        "fonts": fonts_used,
        "homoglyphs_dropped": {label: chars for label, chars in homoglyphs.items() if chars},
        "unicodedata": unicodedata.unidata_version,
    }


# ---------------------------------------------------------------------------------------------- icons


@dataclass(frozen=True)
class IconContext:
    """One Papirus context as a class: the theme and size folder its pictures are taken from."""

    label: str
    theme: str
    size: str


# One size folder per context: the largest that holds enough distinct pictures. Papirus's own panel
# icons are light grey for dark panels, invisible on white, so panel comes from Papirus-Light.
# categories is left out: it is a symlink to apps.
ICON_CONTEXTS = (
    IconContext("apps", "Papirus", "64x64"),
    IconContext("mimetypes", "Papirus", "64x64"),
    IconContext("places", "Papirus", "64x64"),
    IconContext("devices", "Papirus", "48x48"),
    IconContext("status", "Papirus", "48x48"),
    IconContext("actions", "Papirus", "24x24"),
    IconContext("panel", "Papirus-Light", "24x24"),
)


def context_icons(context_folder: Path) -> list[Path]:
    """The distinct SVG files of a context: aliases dereferenced, pictures from other contexts left out."""
    home = context_folder.resolve()
    resolved = {path.resolve() for path in context_folder.glob("*.svg")}
    # An alias that points into another context shows that context's picture, not this one's.
    return sorted(path for path in resolved if path.parent == home and path.is_file())


def render_svg(path: Path) -> Image.Image | None:
    """An SVG drawn by rsvg-convert at 96 px, flattened on white; None if it fails or draws nothing."""
    result = subprocess.run(
        ["rsvg-convert", "--width", str(IMAGE_PX), "--height", str(IMAGE_PX), "--keep-aspect-ratio", str(path)],
        capture_output=True,
        timeout=60,
    )
    if result.returncode != 0 or not result.stdout:
        return None
    image = on_white_square(Image.open(io.BytesIO(result.stdout)))
    return None if is_blank(image) else image


def first_distinct(
    candidates: Iterable,
    render: Callable[[object], Image.Image | None],
    wanted: int,
    seen: set[str],
) -> list[tuple[object, bytes]]:
    """Render candidates in order (in parallel batches) until `wanted` new, non-blank PNGs are found."""
    chosen: list[tuple[object, bytes]] = []
    pending = list(candidates)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        while pending and len(chosen) < wanted:
            batch, pending = pending[:32], pending[32:]
            for candidate, image in zip(batch, pool.map(render, batch), strict=True):
                if image is None or len(chosen) >= wanted:
                    continue
                data = png_bytes(image)
                digest = hashlib.sha256(data).hexdigest()
                if digest not in seen:
                    seen.add(digest)
                    chosen.append((candidate, data))
    return chosen


def build_icons(folder: Path) -> dict:
    """Up to ICONS_PER_CLASS distinct Papirus icons per context, rendered at 96 px on white."""
    require_debian("papirus-icon-theme", ICON_THEMES / "Papirus" / "index.theme")
    if shutil.which("rsvg-convert") is None:
        raise MissingSource("rsvg-convert is missing; install it with: apt-get install librsvg2-bin")
    seen: set[str] = set()
    folders_used = {}
    for context in ICON_CONTEXTS:
        context_folder = ICON_THEMES / context.theme / context.size / context.label
        require_debian("papirus-icon-theme", context_folder)
        icons = context_icons(context_folder)
        order = class_rng("icons", context.label).permutation(len(icons))
        chosen = first_distinct((icons[i] for i in order), render_svg, ICONS_PER_CLASS, seen)
        class_folder = folder / context.label
        class_folder.mkdir()
        for icon, data in chosen:
            (class_folder / f"{icon.stem}.png").write_bytes(data)
        folders_used[context.label] = str(context_folder)
    return {
        "source": "papirus-icon-theme SVGs rendered by rsvg-convert at 96x96 on white; class = the theme's "
        "context folder; aliases dereferenced, duplicates (resolved file, rendered PNG hash) dropped",
        "packages": {
            "papirus-icon-theme": debian_version("papirus-icon-theme"),
            "librsvg2-bin": debian_version("librsvg2-bin"),
        },
        "folders": folders_used,
    }


# ---------------------------------------------------------------------------------------------- emoji

SKIN_TONES = range(0x1F3FB, 0x1F3FF + 1)


def emoji_test_file() -> Path:
    """emoji-test.txt from the unicode-data package."""
    for path in EMOJI_TEST_CANDIDATES:
        if path.exists():
            return path
    found = sorted(Path("/usr/share").glob("unicode*/**/emoji-test.txt"))
    if found:
        return found[0]
    raise MissingSource("emoji-test.txt is missing; install it with: apt-get install unicode-data")


def group_label(group: str) -> str:
    """A folder name for an emoji group: 'Smileys & Emotion' → 'smileys-emotion'."""
    return re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-")


def emoji_groups(path: Path) -> dict[str, list[tuple[int, ...]]]:
    """Fully-qualified emoji without skin tones, per group in file order; the Component group dropped."""
    groups: dict[str, list[tuple[int, ...]]] = {}
    group = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
            continue
        if not line.strip() or line.startswith("#") or group in (None, "Component"):
            continue
        code_field, status = (part.strip() for part in line.split("#", 1)[0].split(";"))
        code_points = tuple(int(value, 16) for value in code_field.split())
        if status == "fully-qualified" and not any(point in SKIN_TONES for point in code_points):
            groups.setdefault(group, []).append(code_points)
    return groups


class EmojiRenderer:
    """Draws emoji sequences with Noto Color Emoji; refuses blank, tofu and unjoined sequences."""

    def __init__(self):
        self.font = ImageFont.truetype(str(EMOJI_FONT), EMOJI_FONT_PX)
        # A supported sequence is one glyph as wide as any emoji; one the font cannot join falls
        # apart into several glyphs side by side.
        self.one_glyph_width = self.font.getlength("\U0001f600")
        self.notdef = self.draw_raw(UNASSIGNED)

    def draw_raw(self, text: str) -> Image.Image | None:
        """The text drawn in colour on white at the font's bitmap size."""
        left, top, right, bottom = self.font.getbbox(text)
        if right <= left or bottom <= top:
            return None
        canvas = Image.new("RGB", (right - left, bottom - top), "white")
        ImageDraw.Draw(canvas).text((-left, -top), text, font=self.font, embedded_color=True)
        return canvas

    def __call__(self, code_points: tuple[int, ...]) -> Image.Image | None:
        """A sequence as a 96 px RGB image, or None when the font cannot draw it as one emoji."""
        text = "".join(map(chr, code_points))
        if self.font.getlength(text) > 1.3 * self.one_glyph_width:
            return None
        drawn = self.draw_raw(text)
        if drawn is None or is_blank(drawn):
            return None
        if self.notdef is not None and drawn.tobytes() == self.notdef.tobytes():
            return None
        return on_white_square(drawn)


def build_emoji(folder: Path) -> dict:
    """Up to EMOJI_PER_CLASS random emoji per Unicode emoji group, drawn by Noto Color Emoji."""
    require_debian("fonts-noto-color-emoji", EMOJI_FONT)
    test_file = emoji_test_file()
    renderer = EmojiRenderer()
    seen: set[str] = set()
    skipped = {}
    for group, sequences in emoji_groups(test_file).items():
        label = group_label(group)
        order = class_rng("emoji", label).permutation(len(sequences))
        # Pillow's FreeType face is not safe to share between threads, so emoji are drawn one at a time.
        chosen = []
        for index in order:
            image = renderer(sequences[index])
            if image is None:
                skipped.setdefault(label, []).append(" ".join(f"{p:04X}" for p in sequences[index]))
                continue
            data = png_bytes(image)
            digest = hashlib.sha256(data).hexdigest()
            if digest not in seen:
                seen.add(digest)
                chosen.append((sequences[index], data))
            if len(chosen) == EMOJI_PER_CLASS:
                break
        class_folder = folder / label
        class_folder.mkdir()
        for code_points, data in chosen:
            (class_folder / ("emoji_u" + "_".join(f"{p:04x}" for p in code_points) + ".png")).write_bytes(data)
    return {
        "source": f"fonts-noto-color-emoji NotoColorEmoji.ttf drawn by Pillow at {EMOJI_FONT_PX} px, scaled to "
        f"96x96 on white; class = group in {test_file} (fully-qualified, no skin tones, no Component)",
        "packages": {
            "fonts-noto-color-emoji": debian_version("fonts-noto-color-emoji"),
            "unicode-data": debian_version("unicode-data"),
        },
        "skipped_unrenderable": skipped,
    }


# ----------------------------------------------------------------------------------------- build/load

BUILDERS: dict[str, Callable[[Path], dict]] = {
    "digits": build_digits,
    "scripts": build_scripts,
    "icons": build_icons,
    "emoji": build_emoji,
}


def class_counts(folder: Path) -> dict[str, int]:
    """Number of PNGs per class folder, classes in sorted order."""
    return {child.name: sum(1 for _ in child.glob("*.png")) for child in sorted(folder.iterdir()) if child.is_dir()}


def build(name: str, root: Path | None = None, force: bool = False) -> Path:
    """Build dataset `name` under root (default cache_dir()) unless its manifest says it is built; return its folder."""
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    root = Path(root) if root is not None else cache_dir()
    target = root / name
    if (target / MANIFEST).exists() and not force:
        return target
    root.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed at the end, so an interrupted build never looks complete.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.building-", dir=root))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is ordinary data
    try:
        started = time.perf_counter()
        details = BUILDERS[name](staging)
        counts = class_counts(staging)
        manifest = {
            "name": name,
            "format_version": FORMAT_VERSION,
            "seed": SEED,
            **details,
            "classes": counts,
            "images": sum(counts.values()),
            "build_seconds": round(time.perf_counter() - started, 1),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        if target.exists():
            # A forced rebuild, or leftovers without a manifest: move the old folder aside, then drop it.
            retired = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=root))
            target.rename(retired / name)
            shutil.rmtree(retired)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def load(name: str, root: Path | None = None) -> tuple[list[Path], list[str]]:
    """Image paths of dataset `name` and their true class names, sorted by class then file; builds if needed."""
    folder = build(name, root)
    paths = sorted(folder.glob("*/*.png"), key=lambda path: (path.parent.name, path.name))
    return paths, [path.parent.name for path in paths]


def manifest(name: str, root: Path | None = None) -> dict:
    """The manifest of a built dataset (counts per class, source, package versions)."""
    return json.loads((build(name, root) / MANIFEST).read_text())


def main() -> None:
    """Build the datasets and print images, classes and folder of each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=DATASETS, metavar="NAME", help=f"some of {', '.join(DATASETS)}")
    parser.add_argument("--force", action="store_true", help="rebuild even if already built")
    parser.add_argument(
        "--root", type=Path, default=None, help="cache folder (default: $LOUPE_BENCH_CACHE or ~/.cache)"
    )
    args = parser.parse_args()
    for name in args.only or DATASETS:
        started = time.perf_counter()
        try:
            folder = build(name, args.root, force=args.force)
        except MissingSource as error:
            sys.exit(f"{name}: {error}")
        counts = json.loads((folder / MANIFEST).read_text())["classes"]
        seconds = time.perf_counter() - started
        print(f"{name:8s} {sum(counts.values()):5d} images {len(counts):3d} classes  {folder}  ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
