"""A seeded synthetic data set in the Gaze360 format (and the RT-GENE format): rendered heads with known 3D gaze.

`python -m gaze360.synthetic --root data/gaze360_synthetic [--format rtgene]`

Each head is a shaded sphere seen from the camera: skin on the face half (around the head direction), hair on the
back half, eyes (white) with pupils (dark), a nose and a mouth. The gaze direction is the head direction plus a
small eye-in-head offset, which moves the pupils. A Gaze360 track is one person over consecutive frames with smooth
motion of gaze and position; the head radius varies between tracks from a small face in a large crop to a face that
fills it (so zoomed copies have something to do), and yaw covers the whole circle (front and back views).
Coordinates: gaze vectors in the Gaze360 eye system (+x left, +y up, +z away from the camera, as seen from it), so an
image column grows to the camera's right = -x.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image

from gaze360.data import yaw_pitch_to_gaze

SKIN, HAIR, WHITE, PUPIL, MOUTH = (np.array(c, dtype=np.float32) for c in (
    (224, 180, 150), (60, 40, 30), (250, 250, 250), (20, 20, 40), (170, 50, 60)))
FACE_HALF_ANGLE = math.radians(75)   # skin within this angle of the head direction, hair beyond
EYE_OFFSETS = ((0.38, 0.22), (-0.38, 0.22))  # (yaw, pitch) of each eye on the head sphere, radians from its axis
EYE_RADIUS, PUPIL_RADIUS = 0.17, 0.08         # angular radii on the sphere
PUPIL_SHIFT = 0.6                             # pupils move by this fraction of the eye-in-head gaze offset
NOSE_RADIUS, MOUTH_OFFSET, MOUTH_RADIUS = 0.09, -0.42, 0.1


def _rotate(direction: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """A direction at face-local (yaw, pitch) offsets from `direction` (a unit vector), using its yaw/pitch frame."""
    base_yaw = math.atan2(direction[0], -direction[2])
    base_pitch = math.asin(float(np.clip(direction[1], -1, 1)))
    return yaw_pitch_to_gaze(np.array([base_yaw + yaw / max(math.cos(base_pitch), 0.3), base_pitch + pitch]))


def render_head(size: int, head: np.ndarray, gaze: np.ndarray, radius: float, centre: tuple[float, float],
                background: np.ndarray) -> Image.Image:
    """A size x size RGB image: `background` [size, size, 3] with a head sphere of `radius` pixels at `centre`
    (column, row), facing unit vector `head`, eyes looking along unit vector `gaze`."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    nx = -(cols - centre[0]) / radius  # image right = -x
    ny = -(rows - centre[1]) / radius  # image down = -y
    inside = nx ** 2 + ny ** 2 < 1.0
    nz = -np.sqrt(np.clip(1.0 - nx ** 2 - ny ** 2, 0.0, None))  # the visible hemisphere faces the camera (-z)
    normal = np.stack([nx, ny, nz], -1)

    def near(direction: np.ndarray, angle: float) -> np.ndarray:
        return normal @ direction.astype(np.float32) > math.cos(angle)

    colour = np.where(near(head, FACE_HALF_ANGLE)[..., None], SKIN, HAIR)
    head_yaw = math.atan2(head[0], -head[2])
    offset_yaw = math.remainder(math.atan2(gaze[0], -gaze[2]) - head_yaw, 2 * math.pi)
    offset_pitch = math.asin(float(np.clip(gaze[1], -1, 1))) - math.asin(float(np.clip(head[1], -1, 1)))
    for eye_yaw, eye_pitch in EYE_OFFSETS:
        colour = np.where(near(_rotate(head, eye_yaw, eye_pitch), EYE_RADIUS)[..., None], WHITE, colour)
        pupil = _rotate(head, eye_yaw + PUPIL_SHIFT * offset_yaw, eye_pitch + PUPIL_SHIFT * offset_pitch)
        colour = np.where(near(pupil, PUPIL_RADIUS)[..., None], PUPIL, colour)
    colour = np.where(near(head, NOSE_RADIUS)[..., None], SKIN * 0.7, colour)
    colour = np.where(near(_rotate(head, 0.0, MOUTH_OFFSET), MOUTH_RADIUS)[..., None], MOUTH, colour)
    light = np.array([0.3, 0.5, -0.8], dtype=np.float32) / np.linalg.norm([0.3, 0.5, -0.8])
    shade = 0.45 + 0.55 * np.clip(normal @ light, 0.0, 1.0)[..., None]
    image = np.where(inside[..., None], colour * shade, background)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth colour gradient with a few rectangles: clutter that does not depend on the gaze."""
    top, bottom = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    fraction = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    image = np.broadcast_to(top * (1 - fraction) + bottom * fraction, (size, size, 3)).copy()
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 8, size // 2, 2)
        image[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 255, 3)
    return image.astype(np.float32)


def track(rng: np.random.Generator, num_frames: int, yaw_range: float, pitch_range: float, size: int,
          min_radius: float, max_radius: float):
    """One person's frames: (images, gaze vectors [T, 3]) with smooth motion of gaze, head and position."""
    yaw0, pitch0 = rng.uniform(-yaw_range, yaw_range), rng.uniform(-pitch_range, pitch_range)
    yaw_rate, pitch_rate = rng.normal(0, 0.05), rng.normal(0, 0.02)
    eye_offset = rng.normal(0, 0.12, 2)  # eye-in-head (yaw, pitch): the head does not point exactly at the target
    radius = rng.uniform(min_radius, max_radius) * size / 2
    centre = np.array([size / 2, size / 2]) + rng.normal(0, 0.04 * size, 2)
    drift = rng.normal(0, 0.004 * size, 2)
    background = random_background(rng, size)
    images, vectors = [], []
    for t in range(num_frames):
        gaze_angles = np.array([yaw0 + yaw_rate * t, np.clip(pitch0 + pitch_rate * t, -1.3, 1.3)])
        head_angles = gaze_angles - eye_offset
        gaze = yaw_pitch_to_gaze(gaze_angles)
        image = render_head(size, yaw_pitch_to_gaze(head_angles), gaze, radius, tuple(centre + drift * t), background)
        images.append(image)
        vectors.append(gaze)
    return images, np.array(vectors)


def write_gaze360(root: str | Path, seed: int = 0, tracks: dict[str, int] | None = None, frames_per_track: int = 10,
                  sizes: tuple[int, int] = (56, 80), min_radius: float = 0.3, max_radius: float = 0.95) -> dict:
    """Write `root`/{train,validation,test}.txt and `root`/imgs/ (Gaze360 layout); returns rows per split.

    Every track has frames_per_track consecutive frames (numbered from a random start); its rows are the frames
    with 3 frames on each side, as in Gaze360. Square images with a side drawn from `sizes` per track.
    """
    root = Path(root)
    tracks = tracks or {"train": 300, "validation": 40, "test": 80}
    rng = np.random.default_rng(seed)
    counts = {}
    for split_index, (split, count) in enumerate(tracks.items()):
        lines = []
        for person in range(count):
            recording = f"rec_{split_index:01d}{person // 10:02d}"
            size = int(rng.integers(sizes[0], sizes[1] + 1))
            images, gaze = track(rng, frames_per_track, math.pi, 0.6, size, min_radius, max_radius)
            start = int(rng.integers(0, 200))
            folder = root / "imgs" / recording / "head" / f"{person:06d}"
            folder.mkdir(parents=True, exist_ok=True)
            for t, image in enumerate(images):
                image.save(folder / f"{start + t:06d}.jpg", quality=92)
            for t in range(3, frames_per_track - 3):
                g = gaze[t]
                lines.append(f"{recording}/head/{person:06d}/{start + t:06d}.jpg {g[0]:.15f} {g[1]:.15f} {g[2]:.15f} \n")
        (root / f"{split}.txt").write_text("".join(lines))
        counts[split] = len(lines)
    (root / "README.txt").write_text(
        f"Synthetic Gaze360-format data (gaze360/synthetic.py, seed {seed}): rendered heads with known gaze.\n"
        f"Rows per split: {counts}. Layout and conventions as Gaze360 (see the project README).\n")
    return counts


def write_rtgene(root: str | Path, seed: int = 0, images_per_subject: int = 30, size: int = 64) -> int:
    """Write 17 RT-GENE-format subjects s000_glasses .. s016_glasses: label_combined.txt and face crops in
    inpainted/face/ (no glasses), original/face/ (dark glasses frames drawn over the eyes) and
    original/face_before_inpainting/ (the same with glasses, a looser crop: the face is smaller). Gaze and head in
    RT-GENE's frontal range; labels are (phi, theta) = (yaw, pitch) radians. Returns the number of images."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for subject in range(17):
        folder = root / f"s{subject:03d}_glasses"
        for variant in ("inpainted/face", "original/face", "original/face_before_inpainting"):
            (folder / variant).mkdir(parents=True, exist_ok=True)
        lines = []
        for index in range(1, images_per_subject + 1):
            gaze_angles = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.5, 0.4)])
            head_angles = gaze_angles - rng.normal(0, 0.15, 2)
            radius = rng.uniform(0.75, 0.95) * size / 2
            centre = (size / 2 + rng.normal(0, 1.5), size / 2 + rng.normal(0, 1.5))
            background = random_background(rng, size)
            head, gaze = yaw_pitch_to_gaze(head_angles), yaw_pitch_to_gaze(gaze_angles)
            image = render_head(size, head, gaze, radius, centre, background)
            image.save(folder / "inpainted" / "face" / f"face_{index:06d}_rgb.png")

            def with_glasses(picture: Image.Image, r: float) -> Image.Image:
                pixels = np.asarray(picture).copy()
                row = int(centre[1] - 0.25 * r)
                pixels[max(row - 1, 0):row + 2, int(centre[0] - 0.8 * r):int(centre[0] + 0.8 * r)] = 10
                return Image.fromarray(pixels)

            with_glasses(image, radius).save(folder / "original" / "face" / f"face_{index:06d}_rgb.png")
            loose = render_head(size, head, gaze, 0.8 * radius, centre, background)
            with_glasses(loose, 0.8 * radius).save(
                folder / "original" / "face_before_inpainting" / f"face_{index:06d}_rgb.png")
            lines.append(f"{index}, [{head_angles[0]:.6f}, {head_angles[1]:.6f}], "
                         f"[{gaze_angles[0]:.6f}, {gaze_angles[1]:.6f}], {1.5e9 + index / 10:.3f}\n")
        (folder / "label_combined.txt").write_text("".join(lines))
    return 17 * images_per_subject


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="output folder")
    parser.add_argument("--format", choices=("gaze360", "rtgene"), default="gaze360")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.format == "gaze360":
        print(f"wrote {write_gaze360(args.root, args.seed)} rows to {args.root}")
    else:
        print(f"wrote {write_rtgene(args.root, args.seed)} RT-GENE images to {args.root}")


if __name__ == "__main__":
    main()
