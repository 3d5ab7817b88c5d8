"""segaudit.io.files.replace_generated_section: the benchmarks' way of rewriting their doc sections."""

from __future__ import annotations

from segaudit.io.files import replace_generated_section

BEGIN, END = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"


def test_replaces_only_between_the_markers(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text(f"# Doc\n\nintro\n\n{BEGIN}\nold table\n{END}\n\nafter\n")
    replace_generated_section(path, BEGIN, END, "new table", title="Doc")
    assert path.read_text() == f"# Doc\n\nintro\n\n{BEGIN}\nnew table\n{END}\n\nafter\n"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.md"]  # no temporary left behind


def test_appends_markers_or_creates_the_file(tmp_path):
    path = tmp_path / "doc.md"
    replace_generated_section(path, BEGIN, END, "table", title="Doc")
    assert path.read_text() == f"# Doc\n\n{BEGIN}\ntable\n{END}\n"
    path.write_text("# Doc\n\nhand-written\n")
    replace_generated_section(path, BEGIN, END, "table", title="Doc")
    assert path.read_text() == f"# Doc\n\nhand-written\n\n{BEGIN}\ntable\n{END}\n"
