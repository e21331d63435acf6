"""voicelane studio: the web pages at ``/studio`` (Record, Data, Train, Voices) and the offline
``/docs``. ``mount_studio(app)`` adds them to the service app.

The pages are one server-rendered template plus small ES modules and vendored files under
``static/`` (no build chain, nothing fetched at run time). They call only the public HTTP API
(``voicelane.service.studio.api`` adds the read and upload routes they need). The page itself
carries no secret: the token reaches it as ``/studio?token=...`` (the URL ``voicelane serve``
prints), which the service turns into a same-site cookie; the page also keeps it in
``sessionStorage`` and sends it as a header.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from voicelane import __version__
from voicelane.service.studio.api import BODY_LIMITS
from voicelane.service.studio.api import router as api_router

HERE = Path(__file__).resolve().parent
STATIC_URL = "/studio/static"
PAGES = ("record", "data", "train", "voices")
templates = Jinja2Templates(directory=str(HERE / "templates"))

__all__ = ["BODY_LIMITS", "mount_studio"]


def mount_studio(app: FastAPI) -> None:
    """Add the studio routes, its static files and a ``/docs`` page served from the package."""
    app.include_router(api_router)
    app.mount(STATIC_URL, StaticFiles(directory=str(HERE / "static")), name="studio-static")
    _replace_docs(app)

    @app.get("/studio", response_class=HTMLResponse, include_in_schema=False)
    def studio(request: Request):
        return templates.TemplateResponse(
            request, "studio.html", {"static": STATIC_URL, "version": __version__, "pages": PAGES}
        )

    @app.get("/studio/", include_in_schema=False)
    def studio_slash():
        return RedirectResponse("/studio", status_code=307)


def _replace_docs(app: FastAPI) -> None:
    """FastAPI's ``/docs`` loads Swagger UI from a CDN and ``/redoc`` loads ReDoc from one: both
    are blank offline. ``/docs`` is served from the vendored Swagger UI; ``/redoc`` points to it."""
    drop = {app.docs_url, app.redoc_url}
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in drop]
    vendor = f"{STATIC_URL}/vendor/swagger-ui"

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{vendor}/swagger-ui-bundle.js",
            swagger_css_url=f"{vendor}/swagger-ui.css",
            swagger_favicon_url=f"{vendor}/favicon-32x32.png",
            oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url,
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc():
        return RedirectResponse("/docs", status_code=307)
