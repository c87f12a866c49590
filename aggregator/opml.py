"""OPML subscription lists in and out: what feed readers import and export.

Reading accepts OPML 1.0 and 2.0 as readers write them: outlines with `xmlUrl` are feeds, an
outline without one that holds others is a folder whose name becomes their category (nested
folders joined with "/"), anything else is skipped. The file is parsed by lxml without DTDs,
entities or network access; a file that is not well-formed is reported with the parser's line
and column. Writing gives OPML 2.0 that reads back to the same sources.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path

from lxml import etree

from aggregator.errors import AggregatorError

__all__ = ["OpmlError", "Subscription", "read_opml", "write_opml"]


class OpmlError(AggregatorError):
    """An OPML file that cannot be read."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """One feed outline."""

    url: str  # xmlUrl
    title: str | None = None  # title, else text
    site: str | None = None  # htmlUrl
    category: str | None = None  # the folders it sits in, joined with "/"


@dataclass(frozen=True, slots=True)
class Opml:
    """What an OPML file lists."""

    feeds: tuple[Subscription, ...]  # in document order
    skipped: int  # outlines that are neither a feed nor a folder of feeds (no xmlUrl)


def read_opml(path: Path) -> Opml:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.parse(str(path), parser).getroot()
    except OSError as exc:
        raise OpmlError(f"{path}: cannot read: {exc}") from None
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        raise OpmlError(f"{path}:{line}:{column}: not well-formed: {exc.msg}") from None
    if etree.QName(root).localname.lower() != "opml":
        raise OpmlError(f"{path}: not an OPML file (the root element is <{root.tag}>)")
    body = next((c for c in root if _local(c) == "body"), None)
    if body is None:
        raise OpmlError(f"{path}: OPML without a <body>")
    feeds: list[Subscription] = []
    skipped = 0
    for outline, folders in _outlines(body, ()):
        url = _attr(outline, "xmlUrl")
        if url:
            title = _attr(outline, "title") or _attr(outline, "text")
            category = "/".join(folders) or None
            feeds.append(Subscription(url, title, _attr(outline, "htmlUrl"), category))
        elif not any(_local(c) == "outline" for c in outline):
            skipped += 1
    return Opml(tuple(feeds), skipped)


def _local(node: etree._Element) -> str:
    return etree.QName(node).localname if isinstance(node.tag, str) else ""


def _attr(node: etree._Element, name: str) -> str | None:
    # Readers differ in case: xmlUrl, xmlurl, XMLURL.
    for key, value in node.attrib.items():
        if str(key).lower() == name.lower() and str(value).strip():
            return str(value).strip()
    return None


def _outlines(
    node: etree._Element, folders: tuple[str, ...]
) -> Iterator[tuple[etree._Element, tuple[str, ...]]]:
    for child in node:
        if _local(child) != "outline":
            continue
        yield child, folders
        if _attr(child, "xmlUrl") is None:
            name = _attr(child, "text") or _attr(child, "title")
            yield from _outlines(child, (*folders, name) if name else folders)


def write_opml(title: str, feeds: Sequence[Subscription], now: datetime) -> bytes:
    """OPML 2.0: feeds without a category first, then one folder outline per category."""
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateCreated").text = format_datetime(now)
    body = etree.SubElement(root, "body")
    folders: dict[str, etree._Element] = {}
    for feed in sorted(feeds, key=lambda f: f.category is not None):
        parent = body
        if feed.category is not None:
            if feed.category not in folders:
                folders[feed.category] = etree.SubElement(
                    body, "outline", text=feed.category, title=feed.category
                )
            parent = folders[feed.category]
        attrs = {"type": "rss", "text": feed.title or feed.url, "title": feed.title or feed.url}
        attrs["xmlUrl"] = feed.url
        if feed.site:
            attrs["htmlUrl"] = feed.site
        etree.SubElement(parent, "outline", attrs)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return out
