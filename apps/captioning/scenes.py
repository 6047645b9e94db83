"""The embedded data: generated scenes of one to nine coloured shapes on a 3 x 3 grid, with captions that name
every shape, drawn from a seed so that each scene is the same on every machine."""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw
from torch.utils.data import Dataset

COLOURS = {"red": (220, 45, 45), "green": (45, 185, 70), "blue": (55, 95, 235), "yellow": (235, 215, 45),
           "white": (240, 240, 240)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.26, "large": 0.44}  # radius as a share of a grid cell
#: the 3 x 3 places of a scene and how captions name them
PLACES = {(0, 0): "at the top left", (0, 1): "at the top", (0, 2): "at the top right",
          (1, 0): "on the left", (1, 1): "in the middle", (1, 2): "on the right",
          (2, 0): "at the bottom left", (2, 1): "at the bottom", (2, 2): "at the bottom right"}


@dataclass(frozen=True)
class Thing:
    """One shape of a generated scene."""

    shape: str
    colour: str
    size: str
    place: tuple[int, int]


def scene_things(rng: random.Random, max_objects: int) -> list[Thing]:
    """One to ``max_objects`` shapes in distinct places, in reading order (rows top to bottom, left to right)."""
    places = sorted(rng.sample(sorted(PLACES), rng.randint(1, max_objects)))
    return [Thing(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES)), p) for p in places]


def scene_captions(things: list[Thing]) -> list[str]:
    """Four references from a small grammar: the shapes in reading order, described two ways, with and without an
    opening phrase."""
    direct = [f"a {t.size} {t.colour} {t.shape} {PLACES[t.place]}" for t in things]
    placed_first = [f"{PLACES[t.place]} a {t.size} {t.colour} {t.shape}" for t in things]
    plain = " and ".join(direct)
    return [plain, f"there is {plain}", f"a picture of {plain}", " and ".join(placed_first)]


def render_scene(things: list[Thing], size: int, rng: random.Random) -> Image.Image:
    """The shapes on a dark background, each jittered a little inside its grid cell."""
    image = Image.new("RGB", (size, size), (28, 28, 32))
    draw = ImageDraw.Draw(image)
    cell = size / 3
    for t in things:
        r = SIZES[t.size] * cell
        slack = max(cell / 2 - r - 1, 0)
        cx = (t.place[1] + 0.5) * cell + rng.uniform(-slack, slack)
        cy = (t.place[0] + 0.5) * cell + rng.uniform(-slack, slack)
        colour = COLOURS[t.colour]
        if t.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif t.shape == "square":
            s = r * 0.88  # about the circle's area
            draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=colour)
        else:
            draw.polygon([(cx, cy - r), (cx - r * 1.05, cy + r * 0.8), (cx + r * 1.05, cy + r * 0.8)], fill=colour)
    return image


class GeneratedScenes(Dataset):
    """``count`` scenes, scene i drawn from (seed, i) alone, so any worker or process renders the same image."""

    def __init__(self, count: int, seed: int, image_size: int, max_objects: int) -> None:
        self.count, self.seed, self.image_size, self.max_objects = count, seed, image_size, max_objects

    def __len__(self) -> int:
        return self.count

    def scene(self, i: int) -> tuple[Image.Image, list[str]]:
        rng = random.Random(self.seed * 1_000_003 + i)
        things = scene_things(rng, self.max_objects)
        return render_scene(things, self.image_size, rng), scene_captions(things)
