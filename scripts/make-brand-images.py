"""Draw the brand images: brand/icon.png (256x256), icon@2x.png (512x512), logo.png (height
128) and logo@2x.png (height 256), the sizes home-assistant/brands asks for
(custom_integrations/home_mind/). Run with any Python that has Pillow:
python scripts/make-brand-images.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BLUE = (31, 111, 235, 255)
WHITE = (255, 255, 255, 255)
OUT = Path(__file__).resolve().parent.parent / "brand"


def icon(size: int) -> Image.Image:
    """A white house with a blue dot (the memory) on a blue rounded square."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, size - 1, size - 1), radius=size // 6, fill=BLUE)
    s = size / 100
    draw.polygon(
        [
            (20 * s, 52 * s),
            (50 * s, 20 * s),
            (80 * s, 52 * s),
            (70 * s, 52 * s),
            (70 * s, 80 * s),
            (30 * s, 80 * s),
            (30 * s, 52 * s),
        ],
        fill=WHITE,
    )
    draw.ellipse((42 * s, 54 * s, 58 * s, 70 * s), fill=BLUE)
    return image


def logo(height: int) -> Image.Image:
    font_path = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
    try:
        font = ImageFont.truetype(font_path, int(height * 0.45))
    except OSError:
        font = ImageFont.load_default(int(height * 0.45))
    text = "Home Mind"
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    width = height + int(height * 0.15) + (right - left)
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    image.paste(icon(height), (0, 0))
    draw = ImageDraw.Draw(image)
    y = (height - (bottom - top)) // 2 - top
    draw.text((height + int(height * 0.15) - left, y), text, font=font, fill=BLUE)
    return image


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    icon(256).save(OUT / "icon.png", optimize=True)
    icon(512).save(OUT / "icon@2x.png", optimize=True)
    logo(128).save(OUT / "logo.png", optimize=True)
    logo(256).save(OUT / "logo@2x.png", optimize=True)
