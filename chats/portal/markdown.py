"""Model output to HTML that can never run script.

Two layers: Markdown is rendered with raw HTML switched off (so `<script>` or `<img onerror>` in
an answer shows as text, as the model wrote it), then the result is sanitised by nh3 against a
small allow-list (no attribute that runs script, no images that would fetch from elsewhere,
links only to http(s)/mailto and never able to reach back through `window.opener`). The page's
Content-Security-Policy, which forbids inline script, is the third.
"""

from __future__ import annotations

import markdown as md
import nh3
from django.utils.safestring import SafeString, mark_safe

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "code",
        "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"


def _renderer() -> md.Markdown:
    renderer = md.Markdown(extensions=["fenced_code", "tables", "sane_lists"], output_format="html")
    # Without these two, raw HTML in the source would pass through; with them it is escaped.
    renderer.preprocessors.deregister("html_block")
    renderer.inlinePatterns.deregister("html")
    return renderer


def render_markdown(text: str) -> SafeString:
    """Sanitised HTML for `text` (Markdown written by a model or a person)."""
    html = _renderer().convert(text)
    clean = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )
    return mark_safe(clean)  # noqa: S308 - sanitised by nh3 just above
