from textgen.cli import run

run()
