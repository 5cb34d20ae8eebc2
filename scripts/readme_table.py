"""Regenerate the README's settings table from relay/settings.py (run after adding a setting)."""

from pathlib import Path

from relay.settings import markdown_table

BEGIN, END = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"

readme = Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text()
head, rest = text.split(BEGIN, 1)
_, tail = rest.split(END, 1)
readme.write_text(f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}")
print(f"updated {readme}")
