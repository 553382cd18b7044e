"""The table of report sections drives the report: what runs, what is stored, what is shown."""

from __future__ import annotations

import json

import pytest

import odenet.analysis._report as R
from odenet import analysis
from odenet.analysis._cli import main
from odenet.errors import ArgumentError

TINY = ["--channels", "2", "--batch", "2", "--no-progress"]


def test_the_table_names_the_sections_in_order():
    names = [s.name for s in R.REPORT_SECTIONS]
    assert names == ["gradients", "adaptive", "reversibility", "stability", "order", "cost",
                     "reconstruction"]
    assert R._SECTIONS == tuple(names)
    assert len(set(names)) == len(names)
    for s in R.REPORT_SECTIONS:
        assert s.what and callable(s.run) and callable(s.figures) and callable(s.html)
        assert callable(s.key_numbers)


@pytest.mark.parametrize("section", ["order", "stability"])
def test_a_section_of_the_table_is_written_to_json_html_and_png(tmp_path, capsys, section):
    out = tmp_path / "r"
    assert main(["report", "--quick", "--sections", section, *TINY, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    entry = next(s for s in R.REPORT_SECTIONS if s.name == section)
    assert f"[1/1] {entry.what}" in printed
    data = json.loads((out / "results.json").read_text())
    assert section in data and list(data["meta"]["section_seconds"]) == [section]
    others = {s.name for s in R.REPORT_SECTIONS} - {section}
    assert not others & set(data)
    page = (out / "index.html").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == (["order.png"] if section == "order" else ["regions.png", "stability.png"])
    for png in pngs:
        assert f'src="{png}"' in page
    title = {"order": "Observed order of convergence", "stability": "Stability"}[section]
    assert f"<h2>{title}</h2>" in page
    assert page.count("<h2>") == 1


class _Fake:
    def __init__(self, name):
        self.name = name

    def to_dict(self):
        return {"fake": self.name}


def _fake_html(name):
    def html(results, figures, overlaps):
        return f"<h2>fake {results[name][0].name}</h2>"
    return html


def test_every_section_of_the_table_is_written(tmp_path, monkeypatch):
    # every runner faked: the table alone decides what runs and what is written
    ran = []

    def fake(name):
        def run(context):
            ran.append(name)
            return {name: [_Fake(name)]}
        return run

    table = tuple(R.ReportSection(s.name, s.what, fake(s.name), lambda results: iter(()),
                                  _fake_html(s.name), lambda results: [])
                  for s in R.REPORT_SECTIONS)
    monkeypatch.setattr(R, "REPORT_SECTIONS", table)
    index = analysis.report(tmp_path / "r", {"model": "dense", "channels": 2, "batch": 2},
                            quiet=True)
    assert ran == list(R._SECTIONS)
    data = json.loads((index.parent / "results.json").read_text())
    page = index.read_text()
    for name in R._SECTIONS:
        assert data[name] == [{"fake": name}]
        assert f"<h2>fake {name}</h2>" in page
    assert list(data["meta"]["section_seconds"]) == list(R._SECTIONS)


def test_an_unknown_section_is_refused(tmp_path):
    with pytest.raises(ArgumentError, match=r"^sections: unknown section 'bogus'; valid sections "
                                            r"are 'gradients', 'adaptive', 'reversibility'"):
        analysis.report(tmp_path / "r", sections=["order", "bogus"])
    assert not (tmp_path / "r").exists()
