"""Small HTML pages for people who arrive from a link (an email's), not from a client.

They are plain forms that post back to the app: no script, no other origin, so their
content security policy allows only inline styles and posting to this site.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from fastapi.responses import HTMLResponse

PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

_STYLE = """
body { font-family: system-ui, sans-serif; line-height: 1.5; margin: 0; background: #f4f5f7; }
main { max-width: 28em; margin: 4em auto; padding: 2em; background: #fff; border-radius: 8px;
       box-shadow: 0 1px 3px rgba(0,0,0,.15); }
h1 { font-size: 1.4em; margin-top: 0; }
label { display: block; margin: 1em 0 .3em; font-weight: 600; }
input { width: 100%; box-sizing: border-box; padding: .5em; font-size: 1em; }
button { margin-top: 1.5em; padding: .6em 1.2em; font-size: 1em; background: #2563eb;
         color: #fff; border: 0; border-radius: 4px; cursor: pointer; }
.problem { color: #b91c1c; font-weight: 600; }
"""


@dataclass(frozen=True, slots=True)
class Input:
    """A visible form field."""

    name: str
    label: str
    kind: str = "text"
    autocomplete: str = "off"
    min_length: int | None = None
    max_length: int | None = None

    def html(self) -> str:
        bounds = "".join(
            f' {attribute}="{value}"'
            for attribute, value in (("minlength", self.min_length), ("maxlength", self.max_length))
            if value is not None
        )
        return (
            f'<label for="{self.name}">{html.escape(self.label)}</label>'
            f'<input id="{self.name}" name="{self.name}" type="{self.kind}" '
            f'autocomplete="{self.autocomplete}" required{bounds}>'
        )


@dataclass(frozen=True, slots=True)
class Form:
    """A form that posts to `action` on this site; `hidden` travels along unseen."""

    action: str
    button: str
    inputs: tuple[Input, ...] = ()
    hidden: tuple[tuple[str, str], ...] = ()

    def html(self) -> str:
        parts = [f'<form method="post" action="{html.escape(self.action, quote=True)}">']
        parts += [
            f'<input type="hidden" name="{html.escape(name, quote=True)}" '
            f'value="{html.escape(value, quote=True)}">'
            for name, value in self.hidden
        ]
        parts += [field.html() for field in self.inputs]
        parts.append(f'<button type="submit">{html.escape(self.button)}</button></form>')
        return "\n".join(parts)


def page(
    title: str,
    *paragraphs: str,
    problem: str | None = None,
    status: int = 200,
    form: Form | None = None,
) -> HTMLResponse:
    """A page: a heading, what went wrong if anything, paragraphs of text, a form."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    if problem:
        body.append(f'<p class="problem" role="alert">{html.escape(problem)}</p>')
    body += [f"<p>{html.escape(text)}</p>" for text in paragraphs]
    if form is not None:
        body.append(form.html())
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        "<body><main>\n" + "\n".join(body) + "\n</main></body></html>\n"
    )
    return HTMLResponse(document, status_code=status, headers={"Cache-Control": "no-store"})
