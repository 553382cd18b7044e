"""Helpers of the documentation build (docs/_gallery.py): the viewcode ``[docs]`` link fix."""

from __future__ import annotations

import pathlib
import sys
from types import SimpleNamespace

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def gallery():
    sys.path.insert(0, str(DOCS))
    try:
        import _gallery
    finally:
        sys.path.remove(str(DOCS))
    return _gallery


def fake_app(objects):
    entries = {name: SimpleNamespace(docname=doc, node_id=name) for name, doc in objects.items()}
    domain = SimpleNamespace(objects=entries)
    return SimpleNamespace(env=SimpleNamespace(get_domain=lambda name: domain))


OBJECTS = {
    "odenet.GradientStrategy": "api/generated/odenet.GradientStrategy",
    "odenet.gradients.resolve_gradient": "api/generated/odenet.gradients.resolve_gradient",
    "odenet.Revolve.recomputations": "api/generated/odenet.Revolve",
    "odenet.Revolve": "api/generated/odenet.Revolve",
}


def link(doc, anchor):
    return f'<a href="../../../{doc}.html#{anchor}">[docs]</a>'


def test_viewcode_links_get_the_anchor_of_the_documented_object(gallery):
    page = "_modules/odenet/gradients/_base"
    body = "".join([
        link(OBJECTS["odenet.GradientStrategy"], "odenet.GradientStrategy"),  # already right
        link(OBJECTS["odenet.gradients.resolve_gradient"], "odenet.resolve_gradient"),  # broken
        link(OBJECTS["odenet.Revolve"], "odenet.gradients.Revolve.recomputations"),  # broken
    ])
    context = {"body": body}
    gallery.fix_viewcode_backlinks(fake_app(OBJECTS), page, "page.html", context, None)
    out = context["body"]
    assert "#odenet.GradientStrategy\"" in out
    assert "odenet.gradients.resolve_gradient.html#odenet.gradients.resolve_gradient\"" in out
    assert "odenet.Revolve.html#odenet.Revolve.recomputations\"" in out
    assert "#odenet.resolve_gradient\"" not in out


def test_viewcode_fix_leaves_other_pages_and_unknown_targets_alone(gallery):
    app = fake_app(OBJECTS)
    body = link(OBJECTS["odenet.gradients.resolve_gradient"], "odenet.resolve_gradient")
    context = {"body": body}
    gallery.fix_viewcode_backlinks(app, "guide/gradients", "page.html", context, None)
    assert context["body"] == body  # not a highlighted-source page
    unknown = link("api/generated/elsewhere", "odenet.resolve_gradient")
    context = {"body": unknown}
    gallery.fix_viewcode_backlinks(app, "_modules/odenet/x", "page.html", context, None)
    assert context["body"] == unknown  # no documented object on the target page
