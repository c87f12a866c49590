"""Source HTML made safe to publish, for `[output] content = "full"`.

The HTML a source sent is untrusted. nh3 (the Python binding of the Rust sanitizer ammonia)
keeps an allow-list of harmless elements and attributes and drops the rest: scripts, styles,
event handlers (`onclick`, ...), `style` attributes, iframes, objects and embeds, forms and
their controls, SVG and anything unknown. Elements whose content is not meant to be read
(script, style, iframe, object, embed, form, ...) go with their content; other unknown
elements leave their text behind. Links keep only http, https and mailto; relative links
and image sources are made absolute against the entry's own link (dropped when it has none),
so that a reader showing the feed elsewhere finds them. Images are kept.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["sanitize_html"]

# Dropped together with everything inside them.
_DROPPED_WITH_CONTENT = frozenset(
    {
        "script",
        "style",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "form",
        "select",
        "textarea",
        "button",
        "noscript",
        "template",
        "svg",
    }
)
_URL_SCHEMES = frozenset({"http", "https", "mailto"})


def sanitize_html(html: str, base: str | None) -> str:
    """`html` with only harmless markup left; relative URLs resolved against `base`."""
    # Imported here: only a feed that publishes full content needs it.
    import nh3

    has_base = base is not None and urlsplit(base).scheme in ("http", "https")
    return nh3.clean(
        html,
        clean_content_tags=set(_DROPPED_WITH_CONTENT),
        url_schemes=set(_URL_SCHEMES),
        url_relative=("rewrite_with_base", base) if has_base and base else "deny",
        link_rel="noopener noreferrer nofollow",
    ).strip()
