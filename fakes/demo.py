"""Content for the offline demo: a fake Reddit populated for a job, with synthetic character images.

Every label gets posts in its own subreddit, titled posts in the show's subreddit (plus decoys whose
titles name nobody), and links in the comments of discussion threads, so all three source kinds
have something to find. Images are served by the fake server itself, so the demo needs no internet.
"""

from __future__ import annotations

import colorsys
import io
import random
import re
from collections import Counter
from pathlib import Path

from PIL import Image, ImageDraw

from fakes.reddit import FakeReddit
from tasks.jobs import CommentLinks, Job, SubredditPosts, TitleMentions


def synthetic_character(label_index: int, variant: int, size: int = 192) -> bytes:
    """A simple drawn 'character' face: hair colour and eye colour identify the label; pose, background
    and scale vary with `variant`. PNG bytes."""
    rng = random.Random(label_index * 1000 + variant)
    hue = (label_index * 0.61803) % 1.0
    hair = tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.9))
    eyes = tuple(int(c * 255) for c in colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.9, 0.7))
    background = tuple(rng.randint(170, 255) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    stripe = tuple(max(0, c - rng.randint(20, 60)) for c in background)
    step, tilt = rng.randint(10, 40), rng.uniform(-1.0, 1.0)
    for x0 in range(-size, 2 * size, step):  # a background pattern that differs per picture
        draw.line([(x0, 0), (x0 + tilt * size, size)], fill=stripe, width=rng.randint(2, step // 2))
    cx, cy = size / 2 + rng.uniform(-12, 12), size / 2 + rng.uniform(-8, 8)
    r = size * rng.uniform(0.28, 0.34)
    # hair: colour and shape identify the label (dhash sees luminance and shape, not hue)
    length = (0.9, 1.15, 1.45, 1.7, 2.0)[label_index % 5]
    draw.ellipse([cx - r * 1.25, cy - r * 1.3, cx + r * 1.25, cy + r * length], fill=hair)
    if label_index % 2:
        draw.polygon([(cx - r * 1.2, cy), (cx - r * 1.6, cy + r * 1.6), (cx - r * 0.8, cy + r * 0.6)], fill=hair)
    draw.ellipse([cx - r, cy - r * 0.9, cx + r, cy + r], fill=(255, 224, 200))  # face
    draw.rectangle([cx - r, cy - r * 0.95, cx + r, cy - r * 0.45], fill=hair)  # fringe
    for side in (-1, 1):
        ex = cx + side * r * 0.42
        draw.ellipse([ex - r * 0.2, cy - r * 0.15, ex + r * 0.2, cy + r * 0.3], fill=(255, 255, 255))
        draw.ellipse([ex - r * 0.13, cy - r * 0.05, ex + r * 0.13, cy + r * 0.28], fill=eyes)
    draw.arc([cx - r * 0.3, cy + r * 0.35, cx + r * 0.3, cy + r * 0.65], 20, 160, fill=(150, 60, 60), width=3)
    bow = (cx + rng.uniform(-r, r), cy - r * rng.uniform(0.9, 1.3))  # an accessory, placed differently each time
    draw.ellipse([bow[0] - r * 0.25, bow[1] - r * 0.15, bow[0] + r * 0.25, bow[1] + r * 0.15], fill=eyes)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def seed_demo(fake: FakeReddit, job: Job, images_per_source: int = 6, seed: int = 0) -> Counter[str]:
    """Populate a started FakeReddit for `job`. Returns how many images were planted per source kind."""
    rng = random.Random(seed)
    planted: Counter[str] = Counter()
    threads: dict[tuple[str, str], dict] = {}
    serial = 0

    def image_url(label_index: int) -> str:
        nonlocal serial
        serial += 1
        return fake.add_image(f"/i/demo{serial:05d}.png", synthetic_character(label_index, serial), "image/png")

    for index, label in enumerate(job.labels):
        name = label.aliases[0] if label.aliases else label.name
        for source in label.sources:
            for k in range(images_per_source):
                if isinstance(source, SubredditPosts):
                    flair = source.flairs[0] if source.flairs else None
                    fake.add_post(source.subreddit, f"Fan art #{k}", url=image_url(index), flair=flair,
                                  score=rng.randint(1, 500))
                elif isinstance(source, TitleMentions):
                    flair = source.flairs[0] if source.flairs else None
                    fake.add_post(source.subreddit, f"{name} by a fan ({k})", url=image_url(index), flair=flair)
                    fake.add_post(source.subreddit, f"Weekly discussion {index}-{k}", is_self=True)  # decoy
                elif isinstance(source, CommentLinks):
                    key = (source.subreddit.lower(), source.query)
                    if key not in threads:
                        threads[key] = fake.add_post(source.subreddit, f"{source.query} - Episode 1",
                                                     is_self=True, flair=source.flair)
                    fake.add_comment(threads[key], f"Look at [{name}]({image_url(index)})!")
                planted[source.kind] += 1
    return planted


IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                  ".gif": "image/gif"}
DEMO_SHOW = "DemoShow"
DEMO_THREADS = "DemoShow Episode Discussion"


def image_folders(images_dir: Path) -> dict[str, list[Path]]:
    """DIR/<label>/<images>: label -> its image files, sorted. Folders without images are left out."""
    folders = {}
    for folder in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            folders[folder.name] = files
    return folders


def demo_job_for_images(images_dir: Path, name: str = "demo") -> Job:
    """A job with the three source kinds for every folder of DIR: the label's own subreddit, titles in the
    show's subreddit, and links in its episode discussion threads. The images are taken as face crops that
    are padded and checked by the cascade (`faces: crops`), which also works for whole pictures."""
    labels = []
    for label in image_folders(images_dir):
        slug = re.sub(r"[^A-Za-z0-9_]", "_", label)[:21]
        labels.append({"name": label, "sources": [
            {"kind": "subreddit_posts", "subreddit": f"{slug}_fans"[:21]},
            {"kind": "title_mentions", "subreddit": DEMO_SHOW},
            {"kind": "comment_links", "subreddit": DEMO_SHOW, "query": DEMO_THREADS},
        ]})
    if not labels:
        raise ValueError(f"{images_dir}: no DIR/<label>/<images> folders with images in them")
    return Job.model_validate({"name": name, "description": f"offline demo on the images of {images_dir}",
                               "options": {"faces": "crops"}, "labels": labels})


def seed_images(fake: FakeReddit, job: Job, images_dir: Path, per_label: int | None = None,
                seed: int = 0) -> Counter[str]:
    """Serve DIR's images through a started FakeReddit: each label's images are dealt in turn to its
    sources (posts, titled posts among decoys, comment links in one discussion thread per show)."""
    rng = random.Random(seed)
    planted: Counter[str] = Counter()
    threads: dict[tuple[str, str], dict] = {}
    folders = image_folders(images_dir)
    serial = 0
    for label in job.labels:
        files = folders.get(label.name, [])[:per_label]
        if not label.sources:
            continue
        for k, path in enumerate(files):
            serial += 1
            url = fake.add_image(f"/i/{serial:06d}{path.suffix.lower()}", path.read_bytes(),
                                 IMAGE_SUFFIXES[path.suffix.lower()])
            source = label.sources[k % len(label.sources)]
            # as people write it: "hakurei reimu", not the folder's "hakurei_reimu"
            name = label.aliases[0] if label.aliases else label.name.replace("_", " ")
            if isinstance(source, SubredditPosts):
                fake.add_post(source.subreddit, f"{name} fan art #{k}", url=url, score=rng.randint(1, 500))
            elif isinstance(source, TitleMentions):
                fake.add_post(source.subreddit, f"{name} ({k})", url=url)
                if rng.random() < 0.3:
                    fake.add_post(source.subreddit, f"Weekly discussion {serial}", is_self=True)  # a decoy
            elif isinstance(source, CommentLinks):
                key = (source.subreddit.lower(), source.query)
                if key not in threads:
                    threads[key] = fake.add_post(source.subreddit, f"{source.query} - Episode 1", is_self=True)
                fake.add_comment(threads[key], f"Look at [{name}]({url})!")
            planted[source.kind] += 1
    return planted
